"""What a pass is: a small dataclass with a name, a docstring and its options as fields.

    @register_pass
    @dataclass
    class PrintOpStats(Pass):
        \"\"\"Count ops by name and print them as JSON to stderr.\"\"\"

        name: ClassVar[str] = "print-op-stats"
        sort: bool = True

        def apply(self, module: Module, ctx: PassContext) -> bool:
            ...
            return False  # the IR did not change

`apply` returns whether it changed the IR (None: unknown, the manager compares text when it needs to know).
Pipelines name passes with options: `canonicalize,fuse-layer-norm{eps_tolerance=1e-6}`.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from typing import IO, ClassVar

from cgpt.ir.core import Module


@dataclass
class PassContext:
    """Shared by the passes of one pipeline run: diagnostics stream and tracing switches."""

    trace_patterns: bool = False
    log: IO[str] = field(default_factory=lambda: sys.stderr)
    pattern_counts: dict[str, int] = field(default_factory=dict)

    def trace(self, message: str) -> None:
        if self.trace_patterns:
            print(message, file=self.log)


@dataclass
class Pass:
    """Base of every pass. Subclasses are dataclasses whose fields are the pass's options."""

    name: ClassVar[str] = ""

    def apply(self, module: Module, ctx: PassContext) -> bool | None:
        raise NotImplementedError

    @classmethod
    def options(cls) -> list[dataclasses.Field]:
        return [f for f in dataclasses.fields(cls) if f.init]

    @classmethod
    def summary(cls) -> str:
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""

    def spec(self) -> str:
        """This pass as pipeline text, with the options that differ from their defaults."""
        changed = []
        for f in self.options():
            value = getattr(self, f.name)
            default = f.default if f.default is not dataclasses.MISSING else None
            if value != default:
                changed.append(f"{f.name}={str(value).lower() if isinstance(value, bool) else value}")
        return self.name + ("{" + ",".join(changed) + "}" if changed else "")
