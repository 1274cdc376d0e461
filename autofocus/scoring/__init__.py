"""Frames → numbers: shared preprocessing, classical measures, the ONNX model scorer, the registry.

Imports nothing of `autofocus` but `errors`. Scorers are built by name with
`autofocus.scoring.registry.get_scorer`; modules with heavy dependencies
(OpenCV, onnxruntime) are imported only when a scorer is first asked for.
"""
