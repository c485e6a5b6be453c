"""Pipeline strings: `canonicalize,fuse-layer-norm{eps_tolerance=1e-6},mesh-place{mode=pipelined}`.

Option values are converted to the type of the pass's dataclass field (int, float, bool, str).
"""

from __future__ import annotations

import re
import typing

from cgpt.ir.diagnostics import PassError
from cgpt.passes.base import Pass
from cgpt.passes.registry import all_passes, lookup_pass

_ITEM = re.compile(r"\s*([A-Za-z0-9_.\-]+)\s*(?:\{([^{}]*)\})?\s*(?:,|$)")


def parse_pipeline(text: str) -> list[Pass]:
    """Build the passes named by a pipeline string, raising PassError for unknown passes or options."""
    passes: list[Pass] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _ITEM.match(text, pos)
        if not m or m.end() == pos:
            raise PassError(f"bad pipeline syntax at column {pos + 1}: '{text[pos:]}'")
        passes.append(make_pass(m.group(1), m.group(2) or ""))
        pos = m.end()
    return passes


def make_pass(name: str, options_text: str = "") -> Pass:
    cls = lookup_pass(name)
    if cls is None:
        known = ", ".join(all_passes())
        raise PassError(f"unknown pass '{name}'; available passes: {known}")
    fields = {f.name: f for f in cls.options()}
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, object] = {}
    for item in filter(None, (s.strip() for s in options_text.split(","))):
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if key not in fields:
            allowed = ", ".join(fields) or "none"
            raise PassError(f"pass '{name}' has no option '{key}' (options: {allowed})")
        kwargs[key] = _convert(name, key, hints.get(key, str), raw.strip() if sep else "true")
    return cls(**kwargs)  # type: ignore[arg-type]


def _convert(pass_name: str, key: str, hint: object, raw: str) -> object:
    try:
        if hint is bool:
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError(raw)
            return raw.lower() in ("true", "1")
        if hint is int:
            return int(raw)
        if hint is float:
            return float(raw)
        return raw
    except ValueError:
        kind = getattr(hint, "__name__", str(hint))
        raise PassError(f"option '{key}' of pass '{pass_name}' takes a {kind}, got '{raw}'") from None


def pipeline_text(passes: list[Pass]) -> str:
    return ",".join(p.spec() for p in passes)


