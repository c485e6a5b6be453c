"""cgpt: a compiler toolkit that lowers GPT models from ONNX to a wafer-scale tile mesh."""

__version__ = "0.1.0"
