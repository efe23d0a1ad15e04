"""Using a trained run: the run folder as an object, the predictor, the per-file verdict, the unknown
detector, ONNX export and the plots a person reads.

Layer: above :mod:`diag.learning`, below :mod:`diag.study` and :mod:`diag.commands`."""
