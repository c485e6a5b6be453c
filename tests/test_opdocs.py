"""docs/ops.md is what the registry says, and every op's docstring example is valid IR."""

from __future__ import annotations

from pathlib import Path

import pytest

from cgpt.ir.opdocs import LEVELS, builtin_ops, example_lines, example_module, op_reference, summary
from cgpt.ir.parser import parse_module
from cgpt.ir.registry import all_ops
from cgpt.ir.verifier import verify_module

OPS_MD = Path(__file__).parents[1] / "docs" / "ops.md"
OPS = sorted(all_ops())


def test_docs_ops_md_is_up_to_date() -> None:
    assert OPS_MD.is_file(), "docs/ops.md is missing: run `make docs`"
    assert OPS_MD.read_text() == op_reference(), "docs/ops.md is out of date: run `make docs`"


def test_every_op_is_documented_under_its_level() -> None:
    text = op_reference()
    levels = [level for level, _, _ in LEVELS]
    assert builtin_ops() == all_ops()  # nothing but cgpt's own ops registered in the test process
    for name, opdef in all_ops().items():
        assert f"### `{name}`" in text
        assert opdef.level in levels
        assert summary(opdef), f"op '{name}' has no docstring summary"


@pytest.mark.parametrize("name", OPS)
def test_op_docstring_example_parses_and_verifies(name: str) -> None:
    opdef = all_ops()[name]
    assert example_lines(opdef), f"op '{name}' has no text example in its docstring"
    module = parse_module(example_module(opdef), f"<{name} docstring>")
    verify_module(module)
    assert {op.name for op in module.ops()} == {name}
