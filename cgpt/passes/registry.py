"""The pass registry: built-in passes found in the package, user passes from the `cgpt.passes` entry-point group
or a file given with `--load-pass FILE.py`."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import pkgutil
from pathlib import Path

from cgpt.ir.diagnostics import PassError
from cgpt.passes.base import Pass

_PASSES: dict[str, type[Pass]] = {}
_DISCOVERED = False


def register_pass(cls: type[Pass]) -> type[Pass]:
    """Class decorator: make a pass available to pipelines under `cls.name`."""
    if not cls.name:
        raise TypeError(f"pass class {cls.__name__} has no name")
    existing = _PASSES.get(cls.name)
    if existing is not None and existing.__qualname__ != cls.__qualname__:
        raise TypeError(f"pass '{cls.name}' is registered twice ({existing.__qualname__} and {cls.__qualname__})")
    _PASSES[cls.name] = cls
    return cls


def discover_passes() -> None:
    """Import every module of cgpt.passes and every `cgpt.passes` entry point (once)."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    import cgpt.passes as pkg

    for info in pkgutil.walk_packages(pkg.__path__, prefix="cgpt.passes."):
        importlib.import_module(info.name)
    for ep in importlib.metadata.entry_points(group="cgpt.passes"):
        try:
            ep.load()
        except Exception as err:  # a broken plugin must not take the built-in passes down
            raise PassError(f"cannot load pass plugin '{ep.name}' ({ep.value}): {err}") from None


def load_pass_file(path: str) -> None:
    """Import a user's Python file so the passes it registers become available."""
    p = Path(path)
    if not p.is_file():
        raise PassError(f"pass file '{path}' does not exist")
    spec = importlib.util.spec_from_file_location(f"cgpt_user_pass_{p.stem}", p)
    if spec is None or spec.loader is None:
        raise PassError(f"cannot load pass file '{path}'")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        raise PassError(f"error while loading pass file: {type(err).__name__}: {err}", where=path) from None


def lookup_pass(name: str) -> type[Pass] | None:
    discover_passes()
    return _PASSES.get(name)


def all_passes() -> dict[str, type[Pass]]:
    discover_passes()
    return dict(sorted(_PASSES.items()))
