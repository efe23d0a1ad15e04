"""Waveforms to model images: resampling, band limit, windows, leakage-free splits, normalisation, the
time-frequency and order transforms, the fitted :class:`~diag.signal.preprocessing.Preprocessing` that
carries all of them from ``diag prepare`` to ``diag predict``, and the prepared dataset on disk.

Layer: above :mod:`diag.sources` / :mod:`diag.simulate`, below :mod:`diag.learning`."""
