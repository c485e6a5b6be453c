"""cgpt-export: write a GPT model (a preset with random weights, or a local HF checkpoint) as ONNX."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from cgpt.cli.common import make_parser, progress_enabled, run_command, stage_progress
from cgpt.ir.diagnostics import CgptError

EXAMPLES = """\
  cgpt-export --model gpt-tiny -o tiny.onnx
  cgpt-export --model cerebras-gpt-111m --exporter torchscript --opset 17 -o 111m.onnx
  cgpt-export --model cerebras-gpt-111m --layers 2 --attn eager -o 111m-l2.onnx
  cgpt-export --model cerebras-gpt-13b --no-weights -o 13b.onnx    # graph + sparse 13b.onnx.data
  cgpt-export --hf-checkpoint ./my-gpt2 -o mine.onnx                # config.json + *.safetensors only"""

STAGES = ("build", "trace", "write")


def build_parser() -> argparse.ArgumentParser:
    from cgpt.frontend.presets import PRESETS

    parser = make_parser(
        "cgpt-export",
        "Export a GPT-2-architecture model to ONNX: input input_ids [batch, seq] (int64), output logits "
        "[batch, seq, vocab], dynamic in batch and seq. Weights over 2 GB go to <output>.data beside it.",
        EXAMPLES,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", metavar="NAME", help=f"a preset: {', '.join(PRESETS)}")
    source.add_argument(
        "--hf-checkpoint", metavar="DIR", help="a local HF GPT-2 checkpoint (safetensors only)"
    )
    parser.add_argument("-o", "--output", required=True, metavar="FILE", help="the .onnx file to write")
    parser.add_argument(
        "--exporter",
        choices=("dynamo", "torchscript"),
        default="dynamo",
        help="torch.onnx exporter (default: dynamo)",
    )
    parser.add_argument(
        "--opset",
        type=int,
        metavar="N",
        help="ONNX opset: torchscript 14..20 (default 17), dynamo 18..20 (default 18)",
    )
    parser.add_argument("--layers", type=int, metavar="N", help="keep only the first N transformer blocks")
    parser.add_argument(
        "--seq-len",
        type=int,
        metavar="N",
        help="sequence length of the tracing example (default min(128, context)); the graph stays dynamic",
    )
    parser.add_argument(
        "--attn",
        choices=("sdpa", "eager"),
        default="sdpa",
        help="HF attention implementation to trace (default: sdpa)",
    )
    parser.add_argument(
        "--no-weights",
        action="store_true",
        help="structure only: parameters become external data in a sparse, never-written side "
        "file (dynamo only; for the large presets)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, metavar="N", help="seed of the random weights (default: 0)"
    )
    parser.add_argument("--force", action="store_true", help="overwrite an existing output file")
    return parser


def run(args: argparse.Namespace) -> int:
    from cgpt.frontend.export import export_gpt
    from cgpt.frontend.presets import get_preset

    out = Path(args.output)
    if out.exists() and not args.force:
        raise CgptError("output exists; pass --force to overwrite it", where=str(out))
    preset = get_preset(args.model) if args.model else None
    start = time.perf_counter()
    with (
        stage_progress(len(STAGES), progress_enabled(args)) as on_stage,
        contextlib.redirect_stdout(sys.stderr),
    ):
        export_gpt(
            out,
            preset=preset,
            hf_checkpoint=args.hf_checkpoint,
            exporter=args.exporter,
            opset=args.opset,
            layers=args.layers,
            seq_len=args.seq_len,
            attn_implementation=args.attn,
            no_weights=args.no_weights,
            seed=args.seed,
            on_stage=on_stage,
        )
    print(out)
    print(_summary(out, args.exporter, time.perf_counter() - start))
    return 0


def _summary(out: Path, exporter: str, seconds: float) -> str:
    """`dynamo opset 18: 118 nodes, 50 initializers, 1,234 bytes, 3.2 s` (+ the side file, if any)."""
    import onnx

    from cgpt.frontend.torch_export import data_file_for

    model = onnx.load(str(out), load_external_data=False)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), "?")
    text = (
        f"{exporter} opset {opset}: {len(model.graph.node)} nodes, "
        f"{len(model.graph.initializer)} initializers, "
        f"{out.stat().st_size:,} bytes"
    )
    data = data_file_for(out)
    if data.exists():
        st = data.stat()
        sparse = " sparse" if st.st_blocks * 512 < st.st_size // 2 else ""
        text += f" + {st.st_size:,} bytes in {data.name}{sparse}"
    return f"{text}, {seconds:.1f} s"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `cgpt-export`."""
    return run_command(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
