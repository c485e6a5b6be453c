"""cgpt-opt: read IR (or an ONNX model), run a pass pipeline, write IR."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from cgpt.cli.common import add_shape_option, make_parser, parse_shape_args, run_command
from cgpt.cli.pipeline_options import add_pipeline_options, pass_manager_options
from cgpt.ir.diagnostics import CgptError
from cgpt.ir.module_files import read_cgir, write_cgir
from cgpt.ir.printer import print_module
from cgpt.ir.verifier import verify_module
from cgpt.passes.manager import PassManager
from cgpt.passes.op_stats import op_counts
from cgpt.passes.pipeline import parse_pipeline
from cgpt.passes.registry import all_passes

EXAMPLES = """\
  cgpt-opt model.cgir -p cse,dce                        print the result on stdout
  cgpt-opt model.onnx -p canonicalize,fuse -o fused.cgir --op-stats
  cgpt-opt model.onnx -p canonicalize,fuse --ir-dump-dir dumps/   one numbered file per pass
  cgpt-opt - -p cse < in.cgir                           read stdin
  cgpt-opt --list-passes"""


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("cgpt-opt", "Run a pass pipeline over cgpt IR (or an imported ONNX model).", EXAMPLES)
    parser.add_argument("input", nargs="?", help="a .cgir file, '-' for stdin, or an .onnx model")
    parser.add_argument("-o", "--output", help="write the IR here (its weights go to NAME.safetensors beside it)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output")
    parser.add_argument("--weights", help="weights sidecar for a .cgir input (default: found beside it)")
    add_shape_option(parser)
    parser.add_argument("--op-stats", action="store_true", help="print {op: count} of the result as JSON on stderr")
    parser.add_argument("--list-passes", action="store_true", help="list the available passes and exit")
    add_pipeline_options(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    if args.list_passes:
        for name, cls in all_passes().items():
            print(f"{name:28s} {cls.summary()}")
        return 0
    if args.input is None:
        raise CgptError("no input given (a .cgir file, '-', or an .onnx model)")
    options = pass_manager_options(args)
    passes = parse_pipeline(args.pipeline or "")
    if args.output and Path(args.output).exists() and not args.force:
        raise CgptError("output exists; pass --force to overwrite it", where=args.output)
    if args.input != "-" and Path(args.input).suffix == ".onnx":
        from cgpt.frontend.load import load_model

        module = load_model(args.input, shapes=parse_shape_args(args.shape) or None)
    else:
        module = read_cgir(args.input, args.weights)
    if "target" in module.attributes:
        import cgpt.backends.mesh.checks  # noqa: F401  (registers the SRAM and color checks of placed programs)
    if options.verify:
        verify_module(module)
    PassManager(passes, options).run(module)
    if args.op_stats:
        print(json.dumps(op_counts(module)), file=sys.stderr)
    if args.output:
        write_cgir(module, args.output)
    elif options.ir_dump_dir or not (options.print_ir_after_all or options.print_ir_after
                                     or options.print_ir_after_change):
        sys.stdout.write(print_module(module))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
