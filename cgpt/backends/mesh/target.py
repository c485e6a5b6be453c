"""The mesh target: a wafer-scale tile mesh described as data (a TOML file); presets ship in the package.

    >>> t = preset("wse2")
    >>> t.width, t.height, t.sram_usable_bytes_per_pe
    (750, 994, 43008)
    >>> round(t.peak_flops("f16") / 1e15, 2)   # whole mesh, FLOP/s
    5.07

Coordinates used by every mesh module: PE (x, y) with x the column (0 = west, growing east) and y the row
(0 = north, growing south). The field reference with units and sources is docs/targets.md.
"""

from __future__ import annotations

import math
import tomllib
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from cgpt.ir.diagnostics import TargetError

DTYPES = ("f32", "f16", "bf16")
DEFAULT_PRESET = "wse2"

# key -> (kind, smallest allowed value, unit); kinds: "int" (TOML integer), "num" (integer or float).
_FIELDS: dict[str, tuple[str, float, str]] = {
    "width": ("int", 1, "PEs"),
    "height": ("int", 1, "PEs"),
    "sram_bytes_per_pe": ("int", 1, "bytes"),
    "sram_reserved_bytes": ("int", 0, "bytes"),
    "sram_read_bytes_per_cycle": ("num", 0, "bytes/cycle"),
    "sram_write_bytes_per_cycle": ("num", 0, "bytes/cycle"),
    "clock_hz": ("num", 0, "Hz"),
    "link_bytes_per_cycle": ("num", 0, "bytes/cycle"),
    "hop_latency_cycles": ("int", 0, "cycles"),
    "ramp_latency_cycles": ("int", 0, "cycles"),
    "routing_colors": ("int", 1, "colors"),
    "stream_bytes_per_s": ("num", 0, "bytes/s"),
}
# "num" fields must be > their bound (a rate of 0 is meaningless); "int" fields must be >= theirs.
_TABLES = {"flops_per_cycle": DTYPES}
_OPTIONAL = {"name": "str", "description": "str"}
_ALLOWED = ("name", "description", *_FIELDS, *_TABLES)


@dataclass(frozen=True)
class Target:
    """One mesh: its size and the per-PE, per-link and off-wafer parameters the compiler and simulator use.

    Sizes are in PEs and bytes, rates per clock cycle of one PE (or per link direction), except `clock_hz` and
    `stream_bytes_per_s`, which are per second. `flops_per_cycle` maps a dtype ("f32", "f16", "bf16") to the
    FLOP one PE retires per cycle (a fused multiply-add counts 2).
    """

    name: str
    width: int
    height: int
    sram_bytes_per_pe: int
    sram_reserved_bytes: int
    sram_read_bytes_per_cycle: float
    sram_write_bytes_per_cycle: float
    flops_per_cycle: Mapping[str, float] = field(hash=False)
    clock_hz: float
    link_bytes_per_cycle: float
    hop_latency_cycles: int
    ramp_latency_cycles: int
    routing_colors: int
    stream_bytes_per_s: float
    description: str = ""

    def __post_init__(self) -> None:
        # A read-only view, so a frozen Target cannot be changed through its table either.
        object.__setattr__(self, "flops_per_cycle", types.MappingProxyType(dict(self.flops_per_cycle)))

    @property
    def pes(self) -> int:
        """Number of PEs in the mesh (width x height)."""
        return self.width * self.height

    @property
    def sram_usable_bytes_per_pe(self) -> int:
        """SRAM per PE left for weights, activations and buffers once code and runtime are loaded."""
        return self.sram_bytes_per_pe - self.sram_reserved_bytes

    def peak_flops(self, dtype: str) -> float:
        """Peak FLOP/s of the whole mesh in `dtype` (every PE retiring its `flops_per_cycle` every cycle)."""
        if dtype not in self.flops_per_cycle:
            known = ", ".join(self.flops_per_cycle)
            raise TargetError(f"dtype '{dtype}' has no compute rate; known: {known}", where=self.name)
        return self.flops_per_cycle[dtype] * self.clock_hz * self.pes

    def pes_for_bytes(self, nbytes: int) -> int:
        """Fewest PEs whose usable SRAM holds `nbytes` (at least 1): the `min_pes` of a kernel's weights."""
        return max(1, math.ceil(nbytes / self.sram_usable_bytes_per_pe))


def load_target(path: str | Path) -> Target:
    """Read a target TOML file; a bad field raises `TargetError` naming the file, key and what is allowed."""
    path = Path(path)
    return _load(path, where=str(path))


def preset_names() -> list[str]:
    """Names of the presets shipped in cgpt/backends/mesh/presets/, sorted."""
    return sorted(p.name.removesuffix(".toml") for p in _presets_dir().iterdir() if p.name.endswith(".toml"))


def preset(name: str) -> Target:
    """The shipped target called `name` (for example "wse2", "wse3", "mesh-16x16")."""
    return _preset(name)


def resolve_target(preset: str | None = None, config: str | Path | None = None) -> Target:
    """The target a command asked for: a preset name, or a TOML file, or the default preset (wse2)."""
    if preset is not None and config is not None:
        raise TargetError(f"give a target preset ('{preset}') or a target file ('{config}'), not both")
    if config is not None:
        return load_target(config)
    return _preset(preset if preset is not None else DEFAULT_PRESET)


def _preset(name: str) -> Target:
    names = preset_names()
    if name not in names:
        raise TargetError(f"unknown target preset '{name}'; known: {', '.join(names)}")
    target = _load(Path(str(_presets_dir() / f"{name}.toml")), where=f"{name}.toml")
    if target.name != name:
        raise TargetError(f"key 'name' is '{target.name}' but the preset file is {name}.toml",
                          where=f"{name}.toml")
    return target


def _presets_dir() -> resources.abc.Traversable:
    return resources.files("cgpt.backends.mesh") / "presets"


def _load(path: Path, where: str) -> Target:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise TargetError(f"cannot read target file: {err.strerror or err}", where=where) from err
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise TargetError(f"not valid TOML: {err}", where=where) from err
    return _from_dict(data, where, default_name=path.name.removesuffix(".toml"))


def _from_dict(data: dict[str, object], where: str, default_name: str) -> Target:
    for key in data:
        if key not in _ALLOWED:
            raise TargetError(f"key '{key}' is unknown; allowed: {', '.join(_ALLOWED)}", where=where)
    missing = [k for k in (*_FIELDS, *_TABLES) if k not in data]
    if missing:
        raise TargetError(f"key '{missing[0]}' is missing; required: {', '.join((*_FIELDS, *_TABLES))}",
                          where=where)
    values: dict[str, object] = {}
    for key, (kind, bound, unit) in _FIELDS.items():
        values[key] = _check_number(key, data[key], kind, bound, unit, where)
    for key, dtypes in _TABLES.items():
        values[key] = _check_table(key, data[key], dtypes, where)
    for key in _OPTIONAL:
        if key in data and not isinstance(data[key], str):
            raise TargetError(f"key '{key}' must be a string, got {_describe(data[key])}", where=where)
    if values["sram_reserved_bytes"] >= values["sram_bytes_per_pe"]:  # type: ignore[operator]
        raise TargetError(
            f"key 'sram_reserved_bytes' must be < sram_bytes_per_pe ({values['sram_bytes_per_pe']} bytes), "
            f"got {values['sram_reserved_bytes']}", where=where)
    return Target(name=str(data.get("name", default_name)), description=str(data.get("description", "")),
                  **values)  # type: ignore[arg-type]


def _check_number(key: str, value: object, kind: str, bound: float, unit: str, where: str) -> int | float:
    # bool is an int subclass in Python; `width = true` is a typo, not 1 PE.
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if kind == "int" and not is_int:
        raise TargetError(f"key '{key}' must be an integer ({unit}), got {_describe(value)}", where=where)
    if kind == "num" and not (is_int or isinstance(value, float)):
        raise TargetError(f"key '{key}' must be a number ({unit}), got {_describe(value)}", where=where)
    assert isinstance(value, int | float)
    if kind == "int" and value < bound:
        raise TargetError(f"key '{key}' must be >= {bound:g} ({unit}), got {value}", where=where)
    if kind == "num" and not (value > bound and math.isfinite(value)):
        raise TargetError(f"key '{key}' must be a finite number > {bound:g} ({unit}), got {value}",
                          where=where)
    return value if kind == "int" else float(value)


def _check_table(key: str, value: object, allowed: tuple[str, ...], where: str) -> dict[str, float]:
    if not isinstance(value, dict):
        raise TargetError(f"key '{key}' must be a table ([{key}] with keys {', '.join(allowed)}), "
                          f"got {_describe(value)}", where=where)
    for sub in value:
        if sub not in allowed:
            raise TargetError(f"key '{key}.{sub}' is unknown; allowed: {', '.join(allowed)}", where=where)
    for sub in allowed:
        if sub not in value:
            raise TargetError(f"key '{key}.{sub}' is missing; required: {', '.join(allowed)}", where=where)
    return {sub: float(_check_number(f"{key}.{sub}", value[sub], "num", 0, "FLOP/cycle/PE", where))
            for sub in allowed}


def _describe(value: object) -> str:
    kind = {bool: "boolean", str: "string", int: "integer", float: "float", dict: "table", list: "array"}
    return f"{kind.get(type(value), type(value).__name__)} {value!r}"
