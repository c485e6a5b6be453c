"""cgpt-compile: an ONNX model to a placed program for the mesh (or a fused program for the reference backend)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from cgpt.cli.common import (
    add_shape_option,
    make_parser,
    parse_shape_args,
    progress_enabled,
    run_command,
    stage_progress,
)
from cgpt.cli.pipeline_options import add_pipeline_options, pass_manager_options
from cgpt.driver import DEFAULT_SHAPE, compile_model, pipeline_length, write_outputs

EXAMPLES = """\
  cgpt-compile model.onnx --target mesh -o out/                  wse2, pipelined, f16, input_ids=1x128
  cgpt-compile model.onnx --target mesh --preset wse3 --mode streaming --dtype f32 -o out/
  cgpt-compile model.onnx --target mesh --target-config my.toml --shape input_ids=2x64 -o out/
  cgpt-compile model.onnx --target reference -o fused/           stop after fusion
  cgpt-compile model.onnx --target mesh --ir-dump-dir dumps/ --timing"""


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("cgpt-compile", "Compile an ONNX GPT for the wafer-scale mesh (or the reference backend).",
                         EXAMPLES)
    parser.add_argument("model", help="an .onnx file (or a .cgir file)")
    parser.add_argument("--target", choices=("mesh", "reference"), default="mesh", help="default: mesh")
    parser.add_argument("--preset", default=None, help="target preset: wse2 (default), wse3, mesh-16x16, ...")
    parser.add_argument("--target-config", metavar="FILE.toml", help="a target description file instead of a preset")
    parser.add_argument("--mode", choices=("pipelined", "streaming"), default="pipelined")
    parser.add_argument("--dtype", choices=("f16", "bf16", "f32"), default=None,
                        help="storage dtype (default f16 on wse presets, f32 otherwise)")
    add_shape_option(parser)
    parser.add_argument("-o", "--output", metavar="OUTDIR", help="output directory (default: MODEL-STEM.cgpt)")
    parser.add_argument("--force", action="store_true", help="overwrite an output directory cgpt did not make")
    add_pipeline_options(parser)
    parser.epilog = (parser.epilog or "") + (
        f"\n\nA symbolic input_ids is specialised to {DEFAULT_SHAPE[0]}x{DEFAULT_SHAPE[1]} unless --shape says "
        "otherwise.")
    return parser


def run(args: argparse.Namespace) -> int:
    preset = args.preset if (args.preset or args.target_config) else "wse2"
    stages = 4 + (pipeline_length(args.pipeline) if args.pipeline else 6 if args.target == "mesh" else 2)
    out = args.output or f"{Path(args.model).stem}.cgpt"
    with stage_progress(stages, progress_enabled(args)) as on_stage:
        compiled = compile_model(args.model, target=args.target, preset=None if args.target_config else preset,
                                 target_config=args.target_config, mode=args.mode, dtype=args.dtype,
                                 shapes=parse_shape_args(args.shape), pipeline=args.pipeline,
                                 options=pass_manager_options(args), on_stage=on_stage)
        on_stage("write outputs")
        write_outputs(compiled, out, force=args.force)
    print(f"{out}: {compiled.ops_before} ops imported, {compiled.ops_after} after the pipeline")
    r = compiled.report
    if r is not None:
        print(f"  {r['target']['name']} {r['mode']} {r['dtype']}: {len(r['regions'])} regions on "
              f"{r['pes_used']:,} PEs, slowest stage {r['stage_cycles_max']:,.0f} cycles ({r['bottleneck']}), "
              f"SRAM/PE max {r['sram_bytes_per_pe_max']:,} bytes")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
