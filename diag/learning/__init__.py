"""Training: the device / precision / checkpoint runtime, the timm model factory, augmentation, the
self-supervised parts, and the two short loops (``train`` and ``pretrain``).

Layer: above :mod:`diag.signal`, below :mod:`diag.serving` and :mod:`diag.study`."""
