"""The pass manager: runs a pipeline, verifies after each pass, times passes, prints or dumps IR around them.

    pm = PassManager(parse_pipeline("canonicalize,fuse"), options=PassManagerOptions(print_ir_after_all=True))
    pm.run(module)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from cgpt.ir.core import Module
from cgpt.ir.diagnostics import CgptError, PassError
from cgpt.ir.files import write_text_atomic
from cgpt.ir.printer import print_module
from cgpt.ir.verifier import verify_module
from cgpt.passes.base import Pass, PassContext


@dataclass
class PassManagerOptions:
    verify: bool = True
    timing: bool = False
    print_ir_before: tuple[str, ...] = ()
    print_ir_after: tuple[str, ...] = ()
    print_ir_after_all: bool = False
    print_ir_after_change: bool = False
    ir_dump_dir: str | None = None
    trace_patterns: bool = False


@dataclass
class PassTiming:
    name: str
    seconds: float
    verify_seconds: float
    changed: bool | None


@dataclass
class PassManager:
    passes: list[Pass]
    options: PassManagerOptions = field(default_factory=PassManagerOptions)
    out: IO[str] = field(default_factory=lambda: sys.stdout)
    log: IO[str] = field(default_factory=lambda: sys.stderr)
    timings: list[PassTiming] = field(default_factory=list)
    on_pass: Callable[[str], None] | None = None  # called with each pass's name as it starts (progress bars)

    def run(self, module: Module) -> Module:
        opts = self.options
        ctx = PassContext(trace_patterns=opts.trace_patterns, log=self.log)
        dump_dir = Path(opts.ir_dump_dir) if opts.ir_dump_dir else None
        if dump_dir is not None:
            if dump_dir.exists() and not dump_dir.is_dir():
                raise CgptError(f"IR dump directory '{dump_dir}' is a file")
            dump_dir.mkdir(parents=True, exist_ok=True)
            self._emit(module, dump_dir, 0, "input")
        for index, p in enumerate(self.passes, start=1):
            want_after = opts.print_ir_after_all or p.name in opts.print_ir_after or (
                dump_dir is not None and not (opts.print_ir_before or opts.print_ir_after or opts.print_ir_after_change)
            )
            if self.on_pass is not None:
                self.on_pass(p.name)
            if p.name in opts.print_ir_before:
                self._emit(module, dump_dir, index, f"before-{p.name}")
            before_text = print_module(module) if opts.print_ir_after_change else None
            start = time.perf_counter()
            try:
                changed = p.apply(module, ctx)
            except CgptError:
                raise
            except RecursionError as err:
                raise PassError(f"pass '{p.name}' failed: {err}") from err
            seconds = time.perf_counter() - start
            vstart = time.perf_counter()
            if opts.verify:
                try:
                    verify_module(module)
                except CgptError as err:
                    err.message = f"after pass '{p.name}': {err.message}"
                    raise
            vseconds = time.perf_counter() - vstart
            if before_text is not None:
                changed = print_module(module) != before_text
                if changed:
                    want_after = True
            self.timings.append(PassTiming(p.spec(), seconds, vseconds, changed))
            if want_after:
                self._emit(module, dump_dir, index, f"after-{p.name}")
        if opts.timing:
            self.log.write(self.timing_table())
        return module

    def _emit(self, module: Module, dump_dir: Path | None, index: int, label: str) -> None:
        text = print_module(module)
        if dump_dir is None:
            self.out.write(f"// -----// IR dump {label} //----- //\n{text}")
        else:
            write_text_atomic(dump_dir / f"{index:03d}-{label}.cgir", text)

    def timing_table(self) -> str:
        total = sum(t.seconds + t.verify_seconds for t in self.timings) or 1e-12
        lines = ["===-------------------------------------------------------------------------===",
                 "  pass timing report", f"  total: {total:.4f} s",
                 f"  {'seconds':>9} {'%':>6} {'verify s':>9}  pass"]
        for t in self.timings:
            pct = 100.0 * (t.seconds + t.verify_seconds) / total
            lines.append(f"  {t.seconds:9.4f} {pct:6.1f} {t.verify_seconds:9.4f}  {t.name}")
        return "\n".join(lines) + "\n"
