"""Focus models: shipped ONNX files with model cards, and the pipeline that builds them."""
