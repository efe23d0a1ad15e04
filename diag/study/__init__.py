"""The question across runs: the grid of starts x seeds x label budgets x warmup / freeze
(``diag compare``), its statistics and the report.

Layer: above :mod:`diag.serving`, below :mod:`diag.commands`."""
