"""The weight store: named tensors kept out of the IR text, read lazily, memory-mapped where they live in a file.

Entries are added as arrays (kept by reference, never copied) or as loaders (called on first use). A store saves
to and opens from a safetensors file; opening memory-maps it, so a 571 MiB sidecar costs no reads until a weight
is used.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cgpt.ir.diagnostics import CgptError
from cgpt.ir.files import atomic_path
from cgpt.ir.types import NUMPY_DTYPES, TensorType

_ST_DTYPES = {"f32": "F32", "f16": "F16", "bf16": "BF16", "i64": "I64", "i32": "I32", "bool": "BOOL"}
_ST_TO_IR = {v: k for k, v in _ST_DTYPES.items()}


@dataclass
class _Entry:
    type: TensorType
    array: np.ndarray | None = None
    loader: Callable[[], np.ndarray] | None = None


class WeightStore:
    """Name -> tensor, with declared types known before any data is read."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def names(self) -> list[str]:
        return list(self._entries)

    def type_of(self, name: str) -> TensorType:
        return self._entries[name].type

    def add(self, name: str, array: np.ndarray) -> None:
        """Add (or replace) a weight held in memory; the array is kept by reference."""
        from cgpt.ir.types import type_of_array

        self._entries[name] = _Entry(type_of_array(array), array=array)

    def add_lazy(self, name: str, type: TensorType, loader: Callable[[], np.ndarray]) -> None:
        """Add a weight whose data is produced by `loader` on first use."""
        self._entries[name] = _Entry(type, loader=loader)

    def cast(self, name: str, dtype: str) -> None:
        """Change a weight's dtype; the conversion happens when the weight is first read."""
        entry = self._entries[name]
        if entry.type.dtype == dtype:
            return
        new_type = entry.type.with_dtype(dtype)
        target = NUMPY_DTYPES[dtype]

        def load(entry: _Entry = entry) -> np.ndarray:
            source = entry.array if entry.array is not None else entry.loader()  # type: ignore[misc]
            return np.asarray(source).astype(target)

        self._entries[name] = _Entry(new_type, loader=load)

    def remove(self, name: str) -> None:
        self._entries.pop(name, None)

    def unique_name(self, base: str) -> str:
        """`base`, or `base.1`, `base.2`, ... whichever is free."""
        if base not in self._entries:
            return base
        i = 1
        while f"{base}.{i}" in self._entries:
            i += 1
        return f"{base}.{i}"

    def __getitem__(self, name: str) -> np.ndarray:
        entry = self._entries.get(name)
        if entry is None:
            raise CgptError(f"weight '{name}' is not in the weight store")
        if entry.array is None:
            assert entry.loader is not None
            array = entry.loader()
            if array.shape != tuple(entry.type.shape) or array.dtype != entry.type.np_dtype:
                raise CgptError(
                    f"weight '{name}' holds {array.dtype}{list(array.shape)}, declared {entry.type}"
                )
            entry.array = array
        return entry.array

    def nbytes(self) -> int:
        return sum(e.type.nbytes or 0 for e in self._entries.values())

    def subset(self, names: list[str]) -> WeightStore:
        """A store sharing these entries (no data is copied or read)."""
        out = WeightStore()
        for n in names:
            out._entries[n] = self._entries[n]
        return out

    # -- safetensors -----------------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str], names: list[str] | None = None) -> None:
        """Write a safetensors file (atomically), streaming one tensor at a time; names sorted for determinism."""
        keys = sorted(names if names is not None else self._entries)
        header: dict[str, object] = {}
        offset = 0
        for k in keys:
            t = self._entries[k].type
            size = t.nbytes or 0
            header[k] = {"dtype": _ST_DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + size]}
            offset += size
        blob = json.dumps(header, separators=(",", ":")).encode()
        blob += b" " * (-len(blob) % 8)  # the format asks for an 8-byte aligned data start
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(blob)))
            f.write(blob)
            for k in keys:
                f.write(np.ascontiguousarray(self[k]).tobytes())

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> WeightStore:
        """Memory-map a safetensors file; tensors are read only when used."""
        p = Path(path)
        try:
            size = p.stat().st_size
            with open(p, "rb") as f:
                (n,) = struct.unpack("<Q", f.read(8))
                if n > size - 8:
                    raise ValueError("header length runs past the end of the file")
                header = json.loads(f.read(n))
        except (OSError, ValueError, struct.error) as err:
            raise CgptError(f"cannot read weights: {err}", where=str(p)) from None
        store = cls()
        base = 8 + n
        for name, info in header.items():
            if name == "__metadata__":
                continue
            dtype = _ST_TO_IR.get(info.get("dtype"))
            if dtype is None:
                raise CgptError(f"tensor '{name}' has unsupported dtype {info.get('dtype')}", where=str(p))
            t = TensorType(tuple(int(d) for d in info["shape"]), dtype)
            start, end = (int(x) for x in info["data_offsets"])
            if end - start != (t.nbytes or 0) or base + end > size:
                raise CgptError(f"tensor '{name}' is shorter than declared or out of the file", where=str(p))
            store.add_lazy(name, t, _memmap_loader(p, base + start, t))
        return store


def _memmap_loader(path: Path, offset: int, t: TensorType) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        if (t.numel or 0) == 0:
            return np.zeros(t.shape, dtype=NUMPY_DTYPES[t.dtype])
        return np.memmap(path, dtype=NUMPY_DTYPES[t.dtype], mode="r", offset=offset, shape=tuple(t.shape))

    return load
