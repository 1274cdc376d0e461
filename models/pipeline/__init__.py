"""The pipeline that builds the focus model: synthetic data, labels, network, training,
evaluation and ONNX export.

Only this package needs torch (the `train` extra); the daemon never imports it. The
one command that rebuilds the shipped model is `python -m autofocus_models.pipeline build`
(see `models/README.md`).
"""
