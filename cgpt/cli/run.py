"""cgpt-run: run a model on the reference backend, onnxruntime or the mesh simulator; inputs and outputs are .npz
files."""

from __future__ import annotations

import argparse
import json
import sys
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cgpt.cli.common import add_shape_option, make_parser, parse_shape_args, run_command
from cgpt.ir.diagnostics import CgptError, RunError
from cgpt.ir.files import atomic_path
from cgpt.ir.types import INT_DTYPES, NUMPY_DTYPES, Sym, TensorType

BACKENDS = ("reference", "onnxruntime", "sim")

EXAMPLES = """\
  cgpt-run model.onnx --inputs in.npz --output out.npz
  cgpt-run model.onnx --backend onnxruntime --inputs in.npz --output ort.npz
  cgpt-run model.onnx --shape input_ids=1x128 --seed 0 --output out.npz   random token ids
  cgpt-run model.cgir --inputs in.npz --output out.npz                    IR with its weights sidecar
  cgpt-run out/ --backend sim --inputs in.npz --output out.npz --report sim.json --trace trace.json
  cgpt-run out/ --backend sim --no-values --report sim.json              the mesh simulator's time alone"""


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("cgpt-run", "Run a model on the reference backend, onnxruntime or the mesh simulator.",
                         EXAMPLES)
    parser.add_argument(
        "model", help="an .onnx file, a .cgir file (weights beside it), or a cgpt-compile directory"
    )
    parser.add_argument(
        "--backend", choices=BACKENDS, default="reference", help="what runs it (default: reference)"
    )
    parser.add_argument(
        "--inputs", metavar="NPZ", help="input arrays by input name (default: random token ids)"
    )
    parser.add_argument("--output", metavar="NPZ", help="write the outputs here, by output name")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default: 0)")
    parser.add_argument("--report", metavar="JSON", help="sim: write the simulator report (sim.json) here")
    parser.add_argument("--trace", metavar="JSON", help="sim: write a Perfetto / Chrome trace here")
    parser.add_argument("--no-values", action="store_true", help="sim: time alone (no inputs; weights never read)")
    parser.add_argument("--force", action="store_true", help="overwrite existing output, report or trace files")
    add_shape_option(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    return run_command(parser, lambda args: run(args, parser), argv)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        shapes = parse_shape_args(args.shape)
    except argparse.ArgumentTypeError as err:
        parser.error(str(err))
    model = Path(args.model)
    if not model.exists():
        raise CgptError("no such file", where=str(model))
    if args.backend != "sim" and (args.report or args.trace or args.no_values):
        parser.error("--report, --trace and --no-values need --backend sim")
    if args.no_values and args.output:
        parser.error("--no-values computes no outputs to write with --output")
    for out in (args.output, args.report, args.trace):
        if out and Path(out).exists() and not args.force:
            raise CgptError("output exists; pass --force to overwrite it", where=out)
    if args.backend == "onnxruntime":
        runner = _OnnxRuntime(model)
    elif args.backend == "sim":
        runner = _Simulator(model, shapes, not args.no_values)
    else:
        runner = _Reference(model, shapes)
    if args.inputs:
        inputs = load_npz(args.inputs)
    elif args.no_values:
        inputs = {}
    else:
        inputs = random_inputs(runner.signature, shapes, runner.vocab_hint, args.seed)
    start = time.perf_counter()
    outputs = runner.run(inputs)
    elapsed = time.perf_counter() - start
    if not args.quiet:
        summary = ", ".join(f"{k}: {v.dtype}{list(v.shape)}" for k, v in outputs.items())
        print(f"note: {args.backend} ran in {elapsed * 1000:.1f} ms ({summary})", file=sys.stderr)
    if args.output:
        save_npz(args.output, outputs)
    if isinstance(runner, _Simulator):
        runner.write(args.report, args.trace, quiet=args.quiet)
    return 0


class _Reference:
    """The reference backend over any model `load_model` reads (.onnx, .cgir, a compile directory)."""

    def __init__(self, model: Path, shapes: dict[str, tuple[int, ...]]) -> None:
        from cgpt.backends.reference.interpreter import Interpreter
        from cgpt.frontend.load import load_model

        module = load_model(model, shapes=shapes or None)
        self.interpreter = Interpreter(module)
        self.signature = self.interpreter.signature
        outs = module.main.result_types
        self.vocab_hint = _vocab_hint(outs[0] if outs else None)

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.interpreter.run(inputs)


class _Simulator:
    """The mesh simulator over a placed program (a cgpt-compile directory or a placed .cgir)."""

    def __init__(self, model: Path, shapes: dict[str, tuple[int, ...]], values: bool) -> None:
        from cgpt.frontend.load import load_model

        self.module = load_model(model, shapes=shapes or None)
        self.values = values
        self.signature = [(a.name_hint or f"arg{i}", a.type) for i, a in enumerate(self.module.main.args)]
        outs = self.module.main.result_types
        self.vocab_hint = _vocab_hint(outs[0] if outs else None)
        self.result = None

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from cgpt.backends.mesh.simulator import simulate

        self.result = simulate(self.module, inputs if self.values else None, values=self.values)
        return self.result.outputs

    def write(self, report: str | None, trace: str | None, quiet: bool) -> None:
        from cgpt.backends.mesh.sim_report import render_sim_text
        from cgpt.ir.files import write_text_atomic

        assert self.result is not None
        if report:
            write_text_atomic(report, json.dumps(self.result.report, indent=1) + "\n")
        if trace:
            write_text_atomic(trace, json.dumps(self.result.trace) + "\n")
        if not quiet:
            print(render_sim_text(self.result.report), end="", file=sys.stderr)


_ORT_DTYPES = {
    "tensor(float)": "f32",
    "tensor(float16)": "f16",
    "tensor(bfloat16)": "bf16",
    "tensor(int64)": "i64",
    "tensor(int32)": "i32",
    "tensor(bool)": "bool",
}


class _OnnxRuntime:
    """onnxruntime on an .onnx file (all graph optimisations on), inputs checked as the reference does."""

    def __init__(self, model: Path) -> None:
        if model.suffix != ".onnx":
            raise CgptError("the onnxruntime backend runs .onnx models only", where=str(model))
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for bad models
            raise CgptError(
                f"onnxruntime cannot load the model: {_first_line(err)}", where=str(model)
            ) from None
        self.signature = []
        for i in self.session.get_inputs():
            dtype = _ORT_DTYPES.get(i.type)
            if dtype is None:
                raise CgptError(
                    f"input '{i.name}' has type {i.type}, which cgpt-run cannot feed", where=str(model)
                )
            dims = tuple(d if isinstance(d, int) else (Sym(d) if d else None) for d in i.shape)
            self.signature.append((i.name, TensorType(dims, dtype)))
        outs = self.session.get_outputs()
        shape = tuple(d if isinstance(d, int) else None for d in outs[0].shape) if outs else ()
        self.vocab_hint = _vocab_hint(TensorType(shape, "f32")) if outs else None

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from cgpt.backends.reference.interpreter import check_inputs

        check_inputs(self.signature, inputs)
        names = [o.name for o in self.session.get_outputs()]
        try:
            values = self.session.run(names, inputs)
        except Exception as err:
            raise RunError(f"onnxruntime failed: {_first_line(err)}") from None
        return dict(zip(names, values, strict=True))


def _vocab_hint(t: TensorType | None) -> int | None:
    """The vocabulary size, read off the logits' static last dim."""
    if t is None or not t.shape or not isinstance(t.shape[-1], int):
        return None
    return t.shape[-1]


def random_inputs(
    signature: list[tuple[str, TensorType]], shapes: dict[str, tuple[int, ...]], vocab: int | None, seed: int
) -> dict[str, np.ndarray]:
    """Deterministic inputs: token ids in [0, vocab) for integer inputs, standard normal for float ones."""
    rng = np.random.default_rng(seed)
    names = [n for n, _ in signature]
    unknown = [n for n in shapes if n not in names]
    if unknown:
        raise CgptError(
            f"--shape names input '{unknown[0]}', which the model does not have (inputs: {', '.join(names)})"
        )
    out: dict[str, np.ndarray] = {}
    for name, t in signature:
        shape = shapes.get(name)
        if shape is None:
            if not t.is_static:
                raise CgptError(
                    f"input '{name}' is {t}: give its dims with --shape {name}=DIMS or pass --inputs"
                )
            shape = tuple(int(d) for d in t.shape)  # type: ignore[arg-type]
        dtype = NUMPY_DTYPES[t.dtype]
        if t.dtype in INT_DTYPES:
            out[name] = rng.integers(0, vocab or 2, size=shape).astype(dtype)
        elif t.dtype == "bool":
            out[name] = np.ones(shape, dtype=dtype)
        else:
            out[name] = rng.standard_normal(size=shape).astype(dtype)
    return out


def load_npz(path: str) -> dict[str, np.ndarray]:
    p = Path(path)
    if not p.is_file():
        raise CgptError("no such file", where=str(p))
    try:
        with np.load(p, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise CgptError(f"not a readable .npz file ({_first_line(err)})", where=str(p)) from None


def save_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
    """Write the arrays atomically (np.savez to an open file: no `.npz` is appended to the temporary name)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


if __name__ == "__main__":
    sys.exit(main())
