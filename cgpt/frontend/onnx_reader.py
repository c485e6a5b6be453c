"""Reading an ONNX file without reading its weights: the protobuf minus raw_data, plus lazy tensor views.

    model, data = read_onnx("model.onnx")
    offset, length = data.raw[0]                                 # where initializer 0's raw_data lies
    w = data.view(data.buffer, offset, np.dtype("float32"), (768, 2304))   # read-only, read on first touch

`onnx.load` parses the whole file into protobuf objects, which holds the weight bytes twice (the file buffer
and the parsed message: 2.1x the weights for the 111M export), and every `raw_data` access copies them again.
Instead the file is memory-mapped and its protobuf wire format walked down to the initializers; each
initializer's `raw_data` payload is recorded as (offset, length) and left out of the bytes handed to protobuf,
so only the graph structure (a few MiB) is parsed and weights stay untouched pages of the map until used.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError

from cgpt.ir.diagnostics import ModelImportError

# Field numbers of onnx.proto that the walk needs.
_MODEL_GRAPH = 7
_GRAPH_INITIALIZER = 5
_TENSOR_RAW_DATA = 9


class _Truncated(Exception):
    """The wire format runs past the end of its buffer."""


def _varint(buf: mmap.mmap | bytes, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise _Truncated
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _fields(buf: mmap.mmap | bytes, pos: int, end: int):
    """Yield (number, wire type, field start, payload start, payload end) for each field in buf[pos:end]."""
    while pos < end:
        start = pos
        tag, pos = _varint(buf, pos, end)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise ValueError("field number 0")
        if wire == 0:
            _, after = _varint(buf, pos, end)
        elif wire == 1:
            after = pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos, end)
            after = pos + length
        elif wire == 5:
            after = pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if after > end:
            raise _Truncated
        yield number, wire, start, pos, after
        pos = after


def _tag(number: int, wire: int) -> bytes:
    return _encode_varint((number << 3) | wire)


def _encode_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _length_delimited(number: int, payload: bytes | bytearray) -> bytes:
    return _tag(number, 2) + _encode_varint(len(payload)) + bytes(payload)


def _strip_model(buf: mmap.mmap) -> tuple[bytes, list[tuple[int, int] | None]]:
    """The model's bytes without initializer raw_data, and each initializer's raw_data (offset, length)."""
    end = len(buf)
    model = bytearray()
    graph_parts: list[tuple[int, int]] = []
    for number, wire, start, p0, p1 in _fields(buf, 0, end):
        if number == _MODEL_GRAPH and wire == 2:
            graph_parts.append((p0, p1))
        else:
            model += buf[start:p1]
    graph = bytearray()
    raw: list[tuple[int, int] | None] = []
    for g0, g1 in graph_parts:  # a repeated message field merges, i.e. concatenates
        run = g0  # copy runs of untouched fields in one slice
        for number, wire, start, p0, p1 in _fields(buf, g0, g1):
            if number != _GRAPH_INITIALIZER or wire != 2:
                continue
            graph += buf[run:start]
            run = p1
            tensor = bytearray()
            where: tuple[int, int] | None = None
            trun = p0
            for tnum, twire, tstart, q0, q1 in _fields(buf, p0, p1):
                if tnum == _TENSOR_RAW_DATA and twire == 2:
                    tensor += buf[trun:tstart]
                    trun = q1
                    where = (q0, q1 - q0)
            tensor += buf[trun:p1]
            graph += _length_delimited(_GRAPH_INITIALIZER, tensor)
            raw.append(where)
        graph += buf[run:g1]
    return bytes(model) + _length_delimited(_MODEL_GRAPH, graph), raw


@dataclass
class ExternalRef:
    """Where an initializer's bytes live outside the protobuf: a file and a byte range."""

    path: Path
    offset: int
    length: int


@dataclass
class OnnxData:
    """Byte sources of one ONNX file: the mapped file itself and external data files (mapped on first use)."""

    path: Path
    buffer: mmap.mmap | None
    raw: list[tuple[int, int] | None]
    _maps: dict[Path, mmap.mmap] = field(default_factory=dict)

    def view(self, source: mmap.mmap, offset: int, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        """A read-only array over `source` bytes; an aligned copy only when the offset is misaligned.

        Protobuf does not align raw_data, and numpy's BLAS path refuses misaligned arrays (it copies them on
        every matmul instead), so a misaligned tensor is copied once, here, and its file pages dropped again.
        """
        count = int(np.prod(shape, dtype=np.int64))
        if count == 0:
            return np.zeros(shape, dtype)
        view = np.frombuffer(source, dtype=dtype, count=count, offset=offset).reshape(shape)
        if offset % dtype.itemsize == 0:
            return view
        out = np.empty(shape, dtype)
        np.copyto(out, view)
        page = mmap.PAGESIZE
        first, last = -(-offset // page) * page, (offset + count * dtype.itemsize) // page * page
        if last > first and hasattr(mmap, "MADV_DONTNEED"):
            source.madvise(mmap.MADV_DONTNEED, first, last - first)
        out.flags.writeable = False  # weights are read-only, copied or not
        return out

    def external_map(self, path: Path) -> mmap.mmap:
        m = self._maps.get(path)
        if m is None:
            with open(path, "rb") as f:
                m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            self._maps[path] = m
        return m


def read_onnx(path: str | os.PathLike[str]) -> tuple[onnx.ModelProto, OnnxData]:
    """Parse an ONNX file's structure; initializer bytes stay in the (memory-mapped) file.

    Raises ModelImportError for a missing, empty, truncated or malformed file.
    """
    p = Path(path)
    try:
        f = open(p, "rb")
    except FileNotFoundError:
        raise ModelImportError("no such file", where=str(p)) from None
    except IsADirectoryError:
        raise ModelImportError("is a directory, not an ONNX file", where=str(p)) from None
    except OSError as err:
        raise ModelImportError(f"cannot open: {err.strerror}", where=str(p)) from None
    with f:
        if os.fstat(f.fileno()).st_size == 0:
            raise ModelImportError("not an ONNX model: the file is empty", where=str(p))
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        stripped, raw = _strip_model(buf)
        model = onnx.ModelProto.FromString(stripped)
    except _Truncated:
        raise ModelImportError("not a complete ONNX model: the protobuf is truncated", where=str(p)) from None
    except (ValueError, DecodeError, RuntimeError) as err:
        raise ModelImportError(f"not an ONNX model: malformed protobuf ({err})", where=str(p)) from None
    if len(raw) != len(model.graph.initializer):  # cannot happen unless protobuf and the walk disagree
        raise ModelImportError("not an ONNX model: malformed initializer list", where=str(p))
    return model, OnnxData(p, buf, raw)
