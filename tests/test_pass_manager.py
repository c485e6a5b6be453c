"""Pipelines, pass options, verification between passes, timing and IR dumps."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import ClassVar

import pytest

from cgpt.ir.core import Module
from cgpt.ir.diagnostics import PassError, VerifyError
from cgpt.ir.parser import parse_module
from cgpt.passes.base import Pass, PassContext
from cgpt.passes.manager import PassManager, PassManagerOptions
from cgpt.passes.pipeline import parse_pipeline
from cgpt.passes.registry import register_pass
from tests.ir_samples import SMALL


@register_pass
@dataclass
class BreakTypes(Pass):
    """Corrupt a result type (to show the verifier runs between passes)."""

    name: ClassVar[str] = "test-break-types"
    dim: int = 9

    def apply(self, module: Module, ctx: PassContext) -> bool:
        from cgpt.ir.types import TensorType

        op = next(op for op in module.ops() if op.name == "neg")
        op.results[0].type = TensorType((self.dim,), "f32")
        return True


def test_pipeline_options_parse_into_typed_fields() -> None:
    (p,) = parse_pipeline("test-break-types{dim=3}")
    assert isinstance(p, BreakTypes) and p.dim == 3
    assert p.spec() == "test-break-types{dim=3}"


def test_unknown_pass_lists_the_available_ones() -> None:
    with pytest.raises(PassError, match=r"unknown pass 'nope'; available passes: .*cse.*dce"):
        parse_pipeline("cse,nope")


def test_unknown_option_and_bad_value_are_errors() -> None:
    with pytest.raises(PassError, match=r"pass 'test-break-types' has no option 'size' \(options: dim\)"):
        parse_pipeline("test-break-types{size=3}")
    with pytest.raises(PassError, match=r"option 'dim' of pass 'test-break-types' takes a int, got 'big'"):
        parse_pipeline("test-break-types{dim=big}")


def test_verifier_runs_after_each_pass_and_names_it() -> None:
    module = parse_module(SMALL)
    with pytest.raises(VerifyError, match="after pass 'test-break-types'"):
        PassManager(parse_pipeline("cse,test-break-types"), out=io.StringIO(), log=io.StringIO()).run(module)
    module = parse_module(SMALL)
    PassManager(parse_pipeline("test-break-types"), PassManagerOptions(verify=False)).run(module)


def test_cse_then_dce_merge_duplicates_and_drop_dead_ops() -> None:
    module = parse_module(SMALL)
    PassManager(parse_pipeline("cse,dce")).run(module)
    names = [op.name for op in module.main.ops]
    assert names.count("add") == 1 and "neg" not in names
    sub = next(op for op in module.main.ops if op.name == "sub")
    assert sub.operands[0].owner.operands[0] is sub.operands[1]


def test_dump_dir_gets_numbered_files_and_timing_goes_to_the_log(tmp_path) -> None:
    log = io.StringIO()
    opts = PassManagerOptions(ir_dump_dir=str(tmp_path / "dumps"), timing=True)
    PassManager(parse_pipeline("cse,dce"), opts, log=log).run(parse_module(SMALL))
    files = sorted(p.name for p in (tmp_path / "dumps").iterdir())
    assert files == ["000-input.cgir", "001-after-cse.cgir", "002-after-dce.cgir"]
    assert "pass timing report" in log.getvalue() and "cse" in log.getvalue()
    assert parse_module((tmp_path / "dumps" / "002-after-dce.cgir").read_text())


def test_print_ir_after_change_prints_only_changing_passes() -> None:
    out = io.StringIO()
    opts = PassManagerOptions(print_ir_after_change=True)
    PassManager(parse_pipeline("dce,dce"), opts, out=out).run(parse_module(SMALL))
    assert out.getvalue().count("IR dump after-dce") == 1


def test_print_ir_before_and_after_a_named_pass() -> None:
    out = io.StringIO()
    opts = PassManagerOptions(print_ir_before=("dce",), print_ir_after=("cse",))
    PassManager(parse_pipeline("cse,dce"), opts, out=out).run(parse_module(SMALL))
    text = out.getvalue()
    assert text.index("IR dump after-cse") < text.index("IR dump before-dce")
