"""diag: fault diagnosis from raw waveforms.

Recordings (vibration, currents, voltages) become leakage-free windows, then time-frequency images
(CWT scalograms, STFT spectrograms), then a timm ConvNeXt classifier started from ImageNet weights,
from self-supervised pretraining on the user's own signals, or from scratch.
"""

__version__ = "0.1.0"
