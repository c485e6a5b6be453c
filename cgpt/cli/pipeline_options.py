"""The pipeline and IR-dump options shared by cgpt-opt and cgpt-compile."""

from __future__ import annotations

import argparse

from cgpt.passes.manager import PassManagerOptions
from cgpt.passes.registry import load_pass_file


def _names(values: list[str] | None) -> tuple[str, ...]:
    return tuple(n.strip() for v in values or [] for n in v.split(",") if n.strip())


def add_pipeline_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("pipeline and IR dumps")
    g.add_argument("-p", "--pipeline", "--passes", dest="pipeline", default=None,
                   help="comma-separated passes with options, e.g. 'canonicalize,fuse-layer-norm{eps_tolerance=1e-6}'")
    g.add_argument("--no-verify", action="store_true", help="do not verify the IR after each pass")
    g.add_argument("--timing", action="store_true", help="print a table of pass times to stderr")
    g.add_argument("--print-ir-before", action="append", metavar="PASS", help="print IR before PASS (repeatable)")
    g.add_argument("--print-ir-after", action="append", metavar="PASS", help="print IR after PASS (repeatable)")
    g.add_argument("--print-ir-after-all", action="store_true", help="print IR after every pass")
    g.add_argument("--print-ir-after-change", action="store_true", help="print IR after each pass that changed it")
    g.add_argument("--ir-dump-dir", metavar="DIR",
                   help="write IR dumps as numbered files (003-after-fuse-attention.cgir) in DIR instead of stdout")
    g.add_argument("--trace-patterns", action="store_true",
                   help="log every rewrite-pattern application with the op's location to stderr")
    g.add_argument("--load-pass", action="append", metavar="FILE.py", help="load passes from a Python file")


def pass_manager_options(args: argparse.Namespace) -> PassManagerOptions:
    for path in args.load_pass or []:
        load_pass_file(path)
    return PassManagerOptions(
        verify=not args.no_verify,
        timing=args.timing,
        print_ir_before=_names(args.print_ir_before),
        print_ir_after=_names(args.print_ir_after),
        print_ir_after_all=args.print_ir_after_all,
        print_ir_after_change=args.print_ir_after_change,
        ir_dump_dir=args.ir_dump_dir,
        trace_patterns=args.trace_patterns,
    )
