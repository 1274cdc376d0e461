"""focusnet-v4: classical channels (Haar band energies at five scales, mean- and top-pooled
over 64-px patches, as logs) into a small linear head fitted on synthetic stacks, numpy only.

`features` the numpy reference of the graph's channels, `graph` the ONNX graph,
`train` the fit and export (`python -m autofocus_models.pipeline.v4.train`).
"""
