"""diag: fault diagnosis from raw waveforms.

Recordings (vibration, currents, voltages) become leakage-free windows, then time-frequency images
(CWT scalograms, STFT spectrograms), then a timm ConvNeXt classifier started from ImageNet weights,
from self-supervised pretraining on the user's own signals, or from scratch.
"""

from diag.version import __version__

__all__ = ["__version__", "load_model"]


def load_model(run, device: str = "cpu", hop=None):
    """A trained run (``diag train --out``) ready to score waveforms: ``predict(signal, fs)``, ``classes``.

    The same code path as ``diag predict`` (see :class:`diag.serving.predictor.Predictor`)::

        from diag import load_model
        model = load_model("runs/bearing")
        result = model.predict(signal, fs=12000)   # signal: [samples] or [channels, samples]
        print(result.verdict, result.confidence, result.spans)
        result.windows.probs                       # [windows, classes], columns in model.classes order
    """
    from diag.serving.predictor import load_model as _load

    return _load(run, device=device, hop=hop)
