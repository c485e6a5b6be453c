"""Every pass of `canonicalize,fuse` preserves meaning on real exports: the reference backend's logits after each
pass equal those before the pipeline within 1e-5 (relative to the largest logit). See tests/pass_harness.py."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from cgpt.backends.reference.interpreter import Interpreter
from cgpt.ir.core import Function, Module
from cgpt.ir.parser import parse_module
from cgpt.ir.weights import WeightStore
from cgpt.passes.base import Pass, PassContext
from cgpt.passes.manager import PassManager
from cgpt.passes.pipeline import parse_pipeline
from tests.models import exported_model
from tests.pass_harness import CANONICALIZE_FUSE_EXPANDED, assert_pipeline_preserves, random_ids, relative_error

TINY_VOCAB, C111M_VOCAB = 512, 50257

# (id, exported_model arguments, vocabulary, slow)
EXPORTS: list[tuple[str, dict[str, Any], int, bool]] = [
    ("tiny-torchscript-opset14", dict(preset="gpt-tiny", exporter="torchscript", opset=14), TINY_VOCAB, False),
    ("tiny-torchscript-opset17", dict(preset="gpt-tiny", exporter="torchscript"), TINY_VOCAB, False),
    ("tiny-torchscript-opset17-eager", dict(preset="gpt-tiny", exporter="torchscript", attn="eager"), TINY_VOCAB,
     False),
    ("tiny-torchscript-opset20", dict(preset="gpt-tiny", exporter="torchscript", opset=20), TINY_VOCAB, False),
    ("tiny-dynamo-opset18", dict(preset="gpt-tiny", exporter="dynamo"), TINY_VOCAB, False),
    ("tiny-dynamo-opset18-eager", dict(preset="gpt-tiny", exporter="dynamo", attn="eager"), TINY_VOCAB, False),
    ("tiny-dynamo-opset20", dict(preset="gpt-tiny", exporter="dynamo", opset=20), TINY_VOCAB, False),
    ("tiny-nanogpt-opset14", dict(preset="gpt-tiny", exporter="torchscript", opset=14, kind="nanogpt"), TINY_VOCAB,
     False),
    ("111m-l2-torchscript", dict(preset="cerebras-gpt-111m", exporter="torchscript", layers=2), C111M_VOCAB, False),
    ("111m-torchscript-sdpa", dict(preset="cerebras-gpt-111m", exporter="torchscript"), C111M_VOCAB, True),
    ("111m-torchscript-eager", dict(preset="cerebras-gpt-111m", exporter="torchscript", attn="eager"), C111M_VOCAB,
     True),
    ("111m-dynamo-opset18", dict(preset="cerebras-gpt-111m", exporter="dynamo"), C111M_VOCAB, True),
    ("111m-dynamo-opset20", dict(preset="cerebras-gpt-111m", exporter="dynamo", opset=20), C111M_VOCAB, True),
    ("111m-nanogpt-opset14", dict(preset="cerebras-gpt-111m", exporter="torchscript", opset=14, kind="nanogpt"),
     C111M_VOCAB, True),
]


def _cases() -> list[Any]:
    cases = []
    for name, kwargs, vocab, slow in EXPORTS:
        marks = [pytest.mark.slow] if slow else []
        cases.append(pytest.param(kwargs, vocab, None, marks=marks, id=f"{name}-symbolic"))
        if name.startswith("tiny-") and "eager" not in name:  # specialised shapes take other canonicalize paths
            cases.append(pytest.param(kwargs, vocab, (2, 9), marks=marks, id=f"{name}-2x9"))
    return cases


@pytest.mark.parametrize("kwargs, vocab, static", _cases())
def test_every_pass_of_canonicalize_fuse_preserves_logits(kwargs: dict[str, Any], vocab: int,
                                                          static: tuple[int, int] | None) -> None:
    path = exported_model(**kwargs)
    batch, seq = static or ((2, 9) if vocab == TINY_VOCAB else (1, 16))
    ids = random_ids(vocab, batch, seq)
    shapes = {"input_ids": static} if static else None
    module, record = assert_pipeline_preserves(path, CANONICALIZE_FUSE_EXPANDED, {"input_ids": ids}, shapes=shapes)
    assert [r.name for r in record] == CANONICALIZE_FUSE_EXPANDED.split(",")
    # the expanded pipeline reaches the fused model, so every fusion really was exercised
    names = {op.name for op in module.ops()}
    assert {"attention", "layer_norm", "linear", "embedding", "residual"} <= names
    assert not names & {"softmax", "erf", "gemm", "reduce_mean"}


@dataclass
class ForgetCausalMask(Pass):
    """A deliberately wrong pass (not registered): attention without its causal mask."""

    name: ClassVar[str] = "forget-causal-mask"

    def apply(self, module: Module, ctx: PassContext) -> bool:
        for op in module.ops():
            if op.name == "attention":
                op.attributes["mask"] = "none"
        return True


def test_harness_names_the_pass_that_broke_meaning(tiny_torchscript) -> None:  # type: ignore[no-untyped-def]
    ids = random_ids(TINY_VOCAB, 2, 9)
    passes = parse_pipeline("canonicalize,fuse") + [ForgetCausalMask()] + parse_pipeline("dce")
    with pytest.raises(AssertionError, match=r"pass #3 'forget-causal-mask' broke meaning: output 'logits'"):
        assert_pipeline_preserves(tiny_torchscript, passes, {"input_ids": ids})


def test_harness_takes_a_module_and_reports_each_pass(tiny_dynamo) -> None:  # type: ignore[no-untyped-def]
    from cgpt.frontend.load import load_model

    module = load_model(tiny_dynamo)
    ids = random_ids(TINY_VOCAB, 1, 5)
    out, record = assert_pipeline_preserves(module, "canonicalize,fuse,cse", {"input_ids": ids})
    assert out is module
    assert [r.name for r in record] == ["canonicalize", "fuse", "cse"]
    assert record[0].ops > record[1].ops and all(r.relative_error <= 1e-5 for r in record)


def test_relative_error_is_relative_to_the_largest_reference_value() -> None:
    want = np.array([100.0, -200.0, 0.5], dtype=np.float32)
    assert relative_error(want + np.float32(0.002), want) == pytest.approx(1e-5, rel=1e-2)
    assert relative_error(want[:2], want) == float("inf")
    assert relative_error(want.astype(np.float64), want) == float("inf")
    assert relative_error(np.full(3, np.nan, np.float32), want) == float("inf")


FILECHECK = Path(__file__).parent / "filecheck"
SIZES = {"batch": 2, "seq": 5}


def _pass_of(path: Path) -> str:
    """The pipeline of the file's first RUN line (`cgpt-opt %s -p PIPELINE ...`)."""
    for line in path.read_text().splitlines():
        if line.startswith("// RUN:") and " -p " in line:
            return line.split(" -p ", 1)[1].split()[0]
    raise ValueError(f"{path} has no `-p` RUN line")


def _random_inputs(fn: Function, rng: np.random.Generator) -> dict[str, np.ndarray]:
    inputs = {}
    for arg in fn.args:
        shape = tuple(SIZES.get(str(d), 3) if not isinstance(d, int) else d for d in arg.type.shape)
        if arg.type.dtype in ("i64", "i32"):
            value = rng.integers(0, 4, size=shape).astype(arg.type.np_dtype)
        elif arg.type.dtype == "bool":
            value = rng.random(shape) < 0.5
        else:
            value = rng.standard_normal(shape).astype(arg.type.np_dtype)
        inputs[arg.name_hint or ""] = value
    return inputs


# fold-shapes.cgir reads a reshape's target shape from an input: random data is no valid shape
RUNNABLE = sorted(p for d in ("canonicalize", "fusion") for p in (FILECHECK / d).glob("*.cgir")
                  if p.name != "fold-shapes.cgir")


@pytest.mark.parametrize("path", RUNNABLE, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_hand_written_pattern_cases_keep_their_meaning(path: Path) -> None:
    """The filecheck inputs run too: every function (positive and negative cases) computes the same outputs after
    its pass, with random weights and inputs."""
    module = parse_module(path.read_text(), str(path))
    store = WeightStore()
    rng = np.random.default_rng(0)
    for op in module.ops():
        if op.name == "weight":
            t = op.result.type
            store.add(op.attributes["name"], rng.standard_normal(t.shape).astype(t.np_dtype))
    module.weights = store
    inputs = {fn.name: _random_inputs(fn, rng) for fn in module.functions}
    before = {fn.name: Interpreter(module, fn.name).run(inputs[fn.name]) for fn in module.functions}
    PassManager(parse_pipeline(_pass_of(path))).run(module)
    for fn in module.functions:
        after = Interpreter(module, fn.name).run(inputs[fn.name])
        for name, want in before[fn.name].items():
            assert relative_error(after[name], want) <= 1e-5, f"@{fn.name} output {name} changed"
