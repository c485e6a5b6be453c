"""ONNX -> IR: graph inputs become arguments with symbolic dims, initializers become lazy weights (or inline
constants when small), each node becomes graph ops through its converter, types come from the op registry.

    module = import_onnx("model.onnx")                                  # tensor<?batchx?seqx...>
    module = import_onnx("model.onnx", shapes={"input_ids": (1, 128)})  # static types everywhere

Weights are never copied at import: embedded `raw_data` and external data files are memory-mapped and read
when a kernel first touches them. NaN/Inf in weights: tensors of at most `NAN_CHECK_LIMIT` elements are
checked at import, larger ones when first loaded (one float64 sum over the data), each with a warning on
stderr naming the tensor. Every error is a one-line `ModelImportError` naming the file and, where there is
one, the node.
"""

from __future__ import annotations

import heapq
import os
import re
import sys
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from cgpt.frontend.convert import ConvertContext, lookup_converter
from cgpt.frontend.onnx_reader import OnnxData, read_onnx
from cgpt.ir.builder import Builder
from cgpt.ir.core import UNKNOWN_LOC, Function, Loc, Module, Value
from cgpt.ir.diagnostics import CgptError, ModelImportError
from cgpt.ir.ops.source import INLINE_CONSTANT_LIMIT
from cgpt.ir.types import FLOAT_DTYPES, Dim, Sym, TensorType, dtype_of_numpy
from cgpt.ir.weights import WeightStore

MIN_IR_VERSION, MAX_IR_VERSION = 3, 14
MIN_OPSET, MAX_OPSET = 13, 28
DEFAULT_DOMAINS = ("", "ai.onnx")
# Weights up to this many elements are checked for NaN/Inf at import; larger ones when first loaded.
NAN_CHECK_LIMIT = 1 << 16

ONNX_TO_IR_DTYPE = {
    TensorProto.FLOAT: "f32",
    TensorProto.FLOAT16: "f16",
    TensorProto.BFLOAT16: "bf16",
    TensorProto.INT64: "i64",
    TensorProto.INT32: "i32",
    TensorProto.BOOL: "bool",
}


class WeightValueWarning(UserWarning):
    """A weight holds NaN or Inf."""


def import_onnx(path: str | os.PathLike[str], shapes: dict[str, tuple[int, ...]] | None = None) -> Module:
    """Import an ONNX file; `shapes` specialises inputs to static dims (`{"input_ids": (1, 128)}`)."""
    p = Path(path)
    model, data = read_onnx(p)
    return _Importer(model, str(p), p.parent, data).run(shapes)


def import_model_proto(
    model: onnx.ModelProto,
    shapes: dict[str, tuple[int, ...]] | None = None,
    base_dir: str | os.PathLike[str] | None = None,
    name: str = "<model>",
) -> Module:
    """Import an in-memory ModelProto (tests, generated models); external data resolves against `base_dir`."""
    return _Importer(model, name, Path(base_dir) if base_dir is not None else None, None).run(shapes)


def ir_dtype(elem_type: int, what: str, where: str) -> str:
    dtype = ONNX_TO_IR_DTYPE.get(elem_type)
    if dtype is None:
        onnx_name = (
            helper.tensor_dtype_to_string(elem_type).removeprefix("TensorProto.").lower()
            if elem_type in helper.get_all_tensor_dtypes()
            else f"#{elem_type}"
        )
        raise ModelImportError(
            f"{what} has element type {onnx_name}, which the IR does not have "
            f"(supported: float, float16, bfloat16, int64, int32, bool)",
            where=where,
        )
    return dtype


# Larger input dims are corruption, not models: no tensor of 2**31 rows fits anywhere.
MAX_DIM = 2**31 - 1
# Value names kept as SSA names; TorchScript's "/transformer/h.0/attn/Add_output_0" stays in the op's loc instead.
_READABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,23}")


class _Importer:
    def __init__(self, model: onnx.ModelProto, filename: str, base_dir: Path | None, data: OnnxData | None):
        self.model = model
        self.graph = model.graph
        self.file = filename
        self.base_dir = base_dir
        # external data files are mapped through the same object whether or not the model came from a file
        self.data = data if data is not None else OnnxData(Path(filename), None, [])
        self.store = WeightStore()
        self.values: dict[str, Value] = {}
        self._fresh_dims = 0

    # -- top level -------------------------------------------------------------------------------------------
    def run(self, shapes: dict[str, tuple[int, ...]] | None) -> Module:
        opset = self._check_versions()
        graph = self.graph
        initializers = {t.name: i for i, t in enumerate(graph.initializer)}
        self.initializers = initializers
        nodes = self._sort_nodes(initializers)
        self._check_supported(nodes, opset)
        module = Module(name=_module_name(graph.name, self.file), attributes={"source": Path(self.file).name})
        module.weights = self.store
        fn = self._make_function(shapes, initializers)
        module.add_function(fn)
        self.builder = Builder(fn)
        self.stated = self._stated_types()
        for index, node in nodes:
            self._convert_node(index, node, opset)
        self._set_outputs(fn)
        return module

    def _node_where(self, name: str) -> str:
        return f"{self.file}: node '{name}'"

    def _check_versions(self) -> int:
        m = self.model
        if not m.HasField("graph") or m.ir_version == 0:
            raise ModelImportError("not an ONNX model: no graph or IR version", where=self.file)
        if not MIN_IR_VERSION <= m.ir_version <= MAX_IR_VERSION:
            raise ModelImportError(
                f"IR version {m.ir_version} is not supported (supported: {MIN_IR_VERSION} to "
                f"{MAX_IR_VERSION})",
                where=self.file,
            )
        opsets = [o.version for o in m.opset_import if o.domain in DEFAULT_DOMAINS]
        if not opsets:
            raise ModelImportError("the model imports no opset of the default ONNX domain", where=self.file)
        opset = max(opsets)
        if not MIN_OPSET <= opset <= MAX_OPSET:
            raise ModelImportError(
                f"opset {opset} is not supported (supported: opsets {MIN_OPSET} to {MAX_OPSET})",
                where=self.file,
            )
        if len(self.graph.sparse_initializer):
            raise ModelImportError("sparse initializers are not supported", where=self.file)
        return opset

    # -- node order ------------------------------------------------------------------------------------------
    def _node_names(self) -> list[str]:
        return [n.name or f"{n.op_type}_{i}" for i, n in enumerate(self.graph.node)]

    def _sort_nodes(self, initializers: dict[str, int]) -> list[tuple[int, onnx.NodeProto]]:
        """Nodes in a topological order (stable: file order where it is already valid)."""
        graph = self.graph
        names = self._node_names()
        self.node_names = names
        available = set(initializers) | {i.name for i in graph.input}
        producer: dict[str, int] = {}
        for i, node in enumerate(graph.node):
            for out in node.output:
                if out:
                    producer.setdefault(out, i)
        waiting_on: list[int] = []
        consumers: dict[int, list[int]] = {}
        for i, node in enumerate(graph.node):
            deps = set()
            for name in node.input:
                if not name or name in available:
                    continue
                src = producer.get(name)
                if src is None:
                    raise ModelImportError(
                        f"input '{name}' is produced by no node and is neither a graph input "
                        f"nor an initializer",
                        where=self._node_where(names[i]),
                    )
                deps.add(src)
            waiting_on.append(len(deps))
            for d in deps:
                consumers.setdefault(d, []).append(i)
        ready = [i for i, n in enumerate(waiting_on) if n == 0]
        heapq.heapify(ready)
        order: list[int] = []
        while ready:
            i = heapq.heappop(ready)
            order.append(i)
            for c in consumers.get(i, ()):
                waiting_on[c] -= 1
                if waiting_on[c] == 0:
                    heapq.heappush(ready, c)
        if len(order) != len(graph.node):
            stuck = [names[i] for i in range(len(graph.node)) if waiting_on[i] > 0]
            shown = ", ".join(f"'{n}'" for n in stuck[:5]) + (
                f" and {len(stuck) - 5} more" if len(stuck) > 5 else ""
            )
            raise ModelImportError(
                f"the graph has a cycle through {len(stuck)} nodes ({shown})", where=self.file
            )
        return [(i, graph.node[i]) for i in order]

    def _check_supported(self, nodes: list[tuple[int, onnx.NodeProto]], opset: int) -> None:
        """One error listing every unsupported op type with its count and first node."""
        counts: Counter[str] = Counter()
        first: dict[str, str] = {}
        for i, node in nodes:
            if node.domain in DEFAULT_DOMAINS:
                key = node.op_type
                ok = lookup_converter(node.op_type, opset) is not None
            else:
                key = f"{node.domain}.{node.op_type}"
                ok = False
            if not ok:
                counts[key] += 1
                first.setdefault(key, self.node_names[i])
        if counts:
            listed = ", ".join(f"{k} (x{counts[k]}, first '{first[k]}')" for k in sorted(counts))
            raise ModelImportError(
                f"{len(counts)} unsupported op type{'s' if len(counts) > 1 else ''} at opset "
                f"{opset}: {listed}",
                where=self.file,
            )

    # -- inputs ----------------------------------------------------------------------------------------------
    def _make_function(
        self, shapes: dict[str, tuple[int, ...]] | None, initializers: dict[str, int]
    ) -> Function:
        graph_inputs = [i for i in self.graph.input if i.name not in initializers]
        names = [i.name for i in graph_inputs]
        shapes = dict(shapes or {})
        unknown = [n for n in shapes if n not in names]
        if unknown:
            raise ModelImportError(
                f"--shape names input '{unknown[0]}', which the model does not have "
                f"(inputs: {', '.join(names) or 'none'})",
                where=self.file,
            )
        types = [self._input_type(vi) for vi in graph_inputs]
        bindings: dict[str, int] = {}
        for vi, t in zip(graph_inputs, types, strict=True):
            given = shapes.get(vi.name)
            if given is None:
                continue
            if len(given) != t.rank:
                raise ModelImportError(
                    f"--shape {vi.name} has {len(given)} dims, but the input is {t} (rank {t.rank})",
                    where=self.file,
                )
            for d, n in zip(t.shape, given, strict=True):
                if isinstance(d, int) and d != n:
                    raise ModelImportError(
                        f"--shape {vi.name}={'x'.join(map(str, given))} does not fit the input's type {t}",
                        where=self.file,
                    )
                if isinstance(d, str):
                    if bindings.get(d, n) != n:
                        raise ModelImportError(
                            f"--shape gives ?{d} two sizes ({bindings[d]} and {n})", where=self.file
                        )
                    bindings[d] = int(n)
        types = [
            t.with_shape(tuple(bindings.get(d, d) if isinstance(d, str) else d for d in t.shape))
            for t in types
        ]
        fn = Function("main", types, names)
        for vi, arg in zip(graph_inputs, fn.args, strict=True):
            self.values[vi.name] = arg
        return fn

    def _input_type(self, vi: onnx.ValueInfoProto) -> TensorType:
        where = f"{self.file}: input '{vi.name}'"
        if vi.type.WhichOneof("value") != "tensor_type":
            raise ModelImportError("only tensor inputs are supported", where=where)
        tt = vi.type.tensor_type
        dtype = ir_dtype(tt.elem_type, f"input '{vi.name}'", self.file)
        if not tt.HasField("shape"):
            raise ModelImportError("the input has no shape (its rank must be known)", where=where)
        dims: list[Dim] = []
        for d in tt.shape.dim:
            if d.HasField("dim_value"):
                if not 0 <= d.dim_value <= MAX_DIM:
                    raise ModelImportError(f"dim {d.dim_value} is negative or absurd (at most {MAX_DIM:,})",
                                           where=where)
                dims.append(int(d.dim_value))
            elif d.dim_param:
                dims.append(Sym(d.dim_param))
            else:
                dims.append(Sym(f"d{self._fresh_dims}"))
                self._fresh_dims += 1
        return TensorType(tuple(dims), dtype)

    # -- initializers and constants --------------------------------------------------------------------------
    def _value(self, name: str, node_name: str) -> Value:
        v = self.values.get(name)
        if v is not None:
            return v
        index = self.initializers.get(name)
        if index is None:  # cannot happen after _sort_nodes; kept as a guard
            raise ModelImportError(f"input '{name}' is not defined", where=self._node_where(node_name))
        v = self._tensor_value(self.graph.initializer[index], name, index)
        self.values[name] = v
        return v

    def _tensor_value(
        self, tensor: onnx.TensorProto, name: str, index: int | None, loc: Loc = UNKNOWN_LOC
    ) -> Value:
        """A `constant` op for a small tensor, else a `weight` op whose data is read lazily.

        Only initializers that become weights are checked for NaN/Inf: exporters write -inf on purpose into
        mask constants and fill values."""
        where = f"{self.file}: tensor '{name}'"
        dtype = ir_dtype(tensor.data_type, f"tensor '{name}'", self.file)
        t = TensorType(tuple(int(d) for d in tensor.dims), dtype)
        loader = self._loader(tensor, name, index, t, where)
        numel = t.numel or 0
        # Shapes, indices and scalars go inline; a float vector is a model parameter even when it is short.
        if numel <= INLINE_CONSTANT_LIMIT and (t.rank == 0 or numel == 1 or dtype not in FLOAT_DTYPES or index is None):
            array = loader()
            v = self.builder.constant(np.array(array), loc=loc)
            v.name_hint = name
            return v
        if index is None:
            lazy = loader
        elif numel <= NAN_CHECK_LIMIT:
            _warn_nonfinite(loader(), name)
            lazy = loader
        else:
            lazy = _checked_lazily(loader, name)
        key = self.store.unique_name(name)
        self.store.add_lazy(key, t, lazy)
        return self.builder.weight(key, t, name_hint=name)

    def _loader(
        self, tensor: onnx.TensorProto, name: str, index: int | None, t: TensorType, where: str
    ) -> Callable[[], np.ndarray]:
        shape = tuple(int(d) for d in t.shape)
        dtype = t.np_dtype
        nbytes = t.nbytes or 0
        if tensor.data_location == TensorProto.EXTERNAL:
            ref = self._external(tensor, name, nbytes)
            data = self.data
            return lambda: data.view(data.external_map(ref[0]), ref[1], dtype, shape)
        raw = self.data.raw[index] if (index is not None and index < len(self.data.raw)) else None
        if raw is not None:
            offset, length = raw
            if length != nbytes:
                raise ModelImportError(f"raw data holds {length} bytes, but {t} needs {nbytes}", where=where)
            data = self.data
            return lambda: data.view(data.buffer, offset, dtype, shape)
        if tensor.HasField("raw_data"):
            if len(tensor.raw_data) != nbytes:
                raise ModelImportError(
                    f"raw data holds {len(tensor.raw_data)} bytes, but {t} needs {nbytes}", where=where
                )
            buf = tensor.raw_data
            return lambda: np.frombuffer(buf, dtype=dtype).reshape(shape)
        typed = (
            tensor.float_data,
            tensor.int32_data,
            tensor.int64_data,
            tensor.double_data,
            tensor.uint64_data,
        )
        if not any(len(f) for f in typed) and (t.numel or 0) > 0:
            raise ModelImportError(f"the tensor has no data: {t} needs {t.numel} values", where=where)
        try:
            array = numpy_helper.to_array(tensor)
        except Exception as err:  # onnx raises assorted errors for inconsistent typed data
            raise ModelImportError(f"cannot read the tensor's data: {err}", where=where) from None
        if array.shape != shape:
            raise ModelImportError(
                f"the tensor holds {array.size} values, but {t} needs {t.numel}", where=where
            )
        array = array.astype(dtype, copy=False)
        return lambda: array

    def _external(self, tensor: onnx.TensorProto, name: str, nbytes: int) -> tuple[Path, int]:
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        where = f"{self.file}: tensor '{name}'"
        if self.base_dir is None:
            raise ModelImportError(
                f"external data '{location}' cannot be resolved for an in-memory model", where=where
            )
        if not location:
            raise ModelImportError("external data has no location", where=where)
        if (
            os.path.isabs(location)
            or location.startswith(("/", "\\"))
            or (len(location) > 1 and location[1] == ":")
        ):
            raise ModelImportError(
                f"refusing external data file '{location}': absolute paths are not allowed", where=where
            )
        if ".." in Path(location.replace("\\", "/")).parts:
            raise ModelImportError(
                f"refusing external data file '{location}': '..' is not allowed", where=where
            )
        base = self.base_dir.resolve()
        path = (base / location).resolve()
        if not path.is_relative_to(base):
            raise ModelImportError(
                f"refusing external data file '{location}': it resolves outside the model's "
                f"directory (to {path})",
                where=where,
            )
        if not path.is_file():
            raise ModelImportError(f"external data file '{location}' does not exist", where=where)
        try:
            offset = int(info.get("offset", "0"))
            length = int(info["length"]) if "length" in info else nbytes
        except ValueError:
            raise ModelImportError("external data offset or length is not an integer", where=where) from None
        if length != nbytes:
            raise ModelImportError(
                f"external data length is {length} bytes, but the tensor needs {nbytes}", where=where
            )
        size = path.stat().st_size
        if offset < 0 or offset + length > size:
            raise ModelImportError(
                f"external data file '{location}' is too short: {size} bytes, but the tensor "
                f"needs bytes {offset} to {offset + length}",
                where=where,
            )
        return path, offset

    # -- nodes -----------------------------------------------------------------------------------------------
    def _convert_node(self, index: int, node: onnx.NodeProto, opset: int) -> None:
        name = self.node_names[index]
        where = self._node_where(name)
        if node.op_type == "Constant" and node.domain in DEFAULT_DOMAINS:
            out = self._constant_node(node, name, where)
            self._bind_outputs(node, [out], where)
            return
        inputs = [self._value(i, name) if i else None for i in node.input]
        try:
            attrs = {a.name: _attr_value(a) for a in node.attribute}
        except CgptError as err:
            raise ModelImportError(err.message, where=where) from None
        ctx = ConvertContext(
            name, node.op_type, opset, Loc((name,)), self.builder, inputs, attrs, where, len(node.output)
        )
        convert = lookup_converter(node.op_type, opset)
        assert convert is not None  # checked by _check_supported
        outs = convert(ctx)
        self._bind_outputs(node, outs, where)

    def _constant_node(self, node: onnx.NodeProto, name: str, where: str) -> Value:
        if len(node.attribute) != 1:
            raise ModelImportError("a Constant node needs exactly one value attribute", where=where)
        attr = node.attribute[0]
        if attr.name == "value":
            tensor = onnx.TensorProto()
            tensor.CopyFrom(attr.t)
            tensor.name = node.output[0]
            return self._tensor_value(tensor, node.output[0], None, Loc((name,)))
        if attr.name in ("value_float", "value_floats"):
            array = np.asarray(helper.get_attribute_value(attr), dtype=np.float32)
        elif attr.name in ("value_int", "value_ints"):
            array = np.asarray(helper.get_attribute_value(attr), dtype=np.int64)
        else:
            raise ModelImportError(f"Constant with '{attr.name}' is not supported", where=where)
        if array.size <= INLINE_CONSTANT_LIMIT:
            return self.builder.constant(array, loc=Loc((name,)))
        key = self.store.unique_name(node.output[0])
        self.store.add(key, array)
        return self.builder.weight(
            key, TensorType(array.shape, dtype_of_numpy(array.dtype)), name_hint=node.output[0]
        )

    def _bind_outputs(self, node: onnx.NodeProto, outs: list[Value | None], where: str) -> None:
        for i, name in enumerate(node.output):
            if not name:
                continue
            v = outs[i] if i < len(outs) else None
            if v is None:
                raise ModelImportError(
                    f"output #{i} ('{name}') of {node.op_type} is not supported", where=where
                )
            self._check_stated(name, v, where)
            if v.name_hint is None and _READABLE.fullmatch(name):
                v.name_hint = name  # short exporter names (dynamo's `layer_norm_3`) read well; paths become numbers
            self.values[name] = v

    # -- stated types ----------------------------------------------------------------------------------------
    def _stated_types(self) -> dict[str, onnx.TypeProto]:
        stated = {vi.name: vi.type for vi in self.graph.value_info}
        stated.update({vi.name: vi.type for vi in self.graph.output})
        return stated

    def _check_stated(self, name: str, v: Value, where: str) -> None:
        """The type the model states for `name` (value_info, outputs) must agree with the inferred one."""
        stated = self.stated.get(name)
        if stated is None or stated.WhichOneof("value") != "tensor_type":
            return
        tt = stated.tensor_type
        if (
            tt.elem_type
            and tt.elem_type in ONNX_TO_IR_DTYPE
            and ONNX_TO_IR_DTYPE[tt.elem_type] != v.type.dtype
        ):
            raise ModelImportError(
                f"'{name}' is inferred as {v.type}, but the model states element type "
                f"{ONNX_TO_IR_DTYPE[tt.elem_type]}",
                where=where,
            )
        if not tt.HasField("shape"):
            return
        dims = tt.shape.dim
        if len(dims) != v.type.rank:
            raise ModelImportError(
                f"'{name}' is inferred as {v.type}, but the model states rank {len(dims)}", where=where
            )
        for axis, (d, ours) in enumerate(zip(dims, v.type.shape, strict=True)):
            if d.HasField("dim_value") and isinstance(ours, int) and d.dim_value != ours:
                stated_text = "x".join(
                    str(x.dim_value) if x.HasField("dim_value") else f"?{x.dim_param}" for x in dims
                )
                raise ModelImportError(
                    f"'{name}' is inferred as {v.type}, but the model states [{stated_text}] (dim {axis})",
                    where=where,
                )

    # -- outputs ---------------------------------------------------------------------------------------------
    def _set_outputs(self, fn: Function) -> None:
        values: list[Value] = []
        names: list[str] = []
        seen: set[Value] = set()
        for vi in self.graph.output:
            v = self.values.get(vi.name)
            if v is None:
                if vi.name in self.initializers:
                    v = self._value(vi.name, vi.name)
                else:
                    raise ModelImportError(
                        f"graph output '{vi.name}' is produced by no node", where=self.file
                    )
            if v in seen:  # each returned value appears once; a repeat gets its own identity
                v = self.builder.create("identity", [v], loc=Loc((vi.name,))).result
            seen.add(v)
            values.append(v)
            names.append(vi.name)
        fn.set_outputs(values, names)


def _attr_value(attr: onnx.AttributeProto) -> Any:
    """An ONNX attribute as a Python value: numbers, strings, lists, tensors as numpy arrays."""
    if attr.ref_attr_name:
        raise ModelImportError(f"attribute '{attr.name}' refers to a function attribute")
    if attr.type == onnx.AttributeProto.TENSOR:
        return numpy_helper.to_array(attr.t)
    if attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
        raise ModelImportError(f"attribute '{attr.name}' holds a subgraph (control flow is not supported)")
    value = helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode("utf-8", errors="replace") for v in value]
    return value


def _module_name(graph_name: str, filename: str) -> str:
    stem = Path(filename).stem if filename and not filename.startswith("<") else graph_name
    name = "".join(c if c.isalnum() or c == "_" else "_" for c in (stem or graph_name or "model"))
    return name or "model"


def _warn_nonfinite(array: np.ndarray, name: str) -> None:
    if array.dtype.kind == "f" or array.dtype.name == "bfloat16":
        a = array.astype(np.float32, copy=False) if array.dtype.name == "bfloat16" else array
        if a.size and not np.isfinite(a.sum(dtype=np.float64)):
            _warn(name)


def _warn(name: str) -> None:
    warnings.warn(f"weight '{name}' holds NaN or Inf values", WeightValueWarning, stacklevel=2)
    sys.stderr.flush()


def _checked_lazily(loader: Callable[[], np.ndarray], name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        array = loader()
        _warn_nonfinite(array, name)
        return array

    return load
