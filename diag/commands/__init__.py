"""One module per command of the ``diag`` CLI that is more than a call into a lower layer. Each is the
function the CLI calls; no command imports another.

Layer: the top, under :mod:`diag.cli` only."""
