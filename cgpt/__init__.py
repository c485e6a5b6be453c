"""cgpt: a compiler toolkit that lowers GPT models from ONNX to a wafer-scale tile mesh."""

__version__ = "0.1.0"


def compile(path, target="mesh", preset="wse2", **options):  # type: ignore[no-untyped-def]  # noqa: A001
    """Compile an ONNX model: `cgpt.compile("model.onnx", target="mesh", preset="wse2")` (see cgpt.driver)."""
    from cgpt.driver import compile_model

    return compile_model(path, target=target, preset=preset, **options)
