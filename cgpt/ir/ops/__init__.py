"""The built-in op set: sources (weight, constant), graph ops (ONNX-like), fused ops and mesh ops.

Importing this package registers them all; `cgpt.ir.registry.lookup_op` does so on first use.
"""

from cgpt.ir.ops import source  # noqa: F401

for _name in ("graph", "fused", "mesh"):
    try:
        __import__(f"cgpt.ir.ops.{_name}")
    except ModuleNotFoundError as _err:  # a level not written yet
        if _err.name != f"cgpt.ir.ops.{_name}":
            raise
