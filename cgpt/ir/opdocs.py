"""The op reference (docs/ops.md), generated from the op registry so it cannot drift from the code.

    python -m cgpt.ir.opdocs > docs/ops.md          # what `make docs` runs

Every op is listed under its level (source, graph, fused, mesh) with its one-line summary, operands, results,
attributes (kind, default, doc) and the text example from its docstring. `example_module` wraps an op's example
in a module, so a test can parse and verify every example.
"""

from __future__ import annotations

import inspect
import re
import sys

from cgpt.ir.printer import format_attr_value
from cgpt.ir.registry import Attr, OpDef, all_ops

LEVELS = (
    ("source", "Source ops", "Bring values into a function: weights (data in the weight store) and small inline "
     "constants."),
    ("graph", "Graph ops", "ONNX-like ops, one or a few per ONNX operator: what the importer produces and what "
     "canonicalize simplifies."),
    ("fused", "Fused ops", "Transformer-level ops that `fuse` reduces every GPT export to; each is one region of "
     "PEs on the mesh."),
    ("mesh", "Mesh ops", "Fused ops bound to a region of PEs and a tiling (written by the mesh passes), plus the "
     "transfers between regions."),
)
_VALUE = re.compile(r"%[A-Za-z0-9_$.\-]+")
_TYPE = re.compile(r"tensor<[^<>]*>")


def example_lines(opdef: type[OpDef]) -> list[str]:
    """The op's text examples from its docstring (the lines that define a value with this op)."""
    return [ln for ln in opdef.example().splitlines() if ln]


def _prose(opdef: type[OpDef]) -> list[str]:
    """The docstring's paragraphs other than the examples, each joined into one line."""
    examples = set(example_lines(opdef))
    paragraphs: list[str] = []
    current: list[str] = []
    for line in inspect.cleandoc(opdef.__doc__ or "").splitlines() + [""]:
        text = line.strip()
        if text and text not in examples:
            current.append(text)
            continue
        if current:
            paragraphs.append(" ".join(current))
            current = []
    return paragraphs


def summary(opdef: type[OpDef]) -> str:
    """The first paragraph of the op's docstring, on one line."""
    prose = _prose(opdef)
    return prose[0] if prose else ""


def _kind(spec: Attr) -> str:
    kind = spec.kind
    return kind if isinstance(kind, str) else f"#{getattr(kind, 'attr_name', kind.__name__)}"


def _default(spec: Attr) -> str:
    if spec.required:
        return "required"
    return f"`{format_attr_value(spec.default)}`"


def _attr_doc(spec: Attr) -> str:
    extra = []
    if spec.choices is not None:
        extra.append("one of " + ", ".join(f"`{format_attr_value(c)}`" for c in spec.choices))
    if spec.min is not None:
        extra.append(f">= {spec.min:g}")
    doc = spec.doc.replace("|", "\\|")
    return doc + (f" ({'; '.join(extra)})" if extra else "")


def _signature_names(names: tuple[str, ...]) -> str:
    if not names:
        return "none"
    notes = {"?": " (optional)", "*": " (variadic)"}
    return ", ".join(f"`{n.rstrip('?*')}`{notes.get(n[-1], '')}" for n in names)


def op_section(opdef: type[OpDef]) -> str:
    """One op's entry: heading, summary, operands, results, attributes, further prose and its example."""
    lines = [f"### `{opdef.name}`", "", summary(opdef) or "(no description)", ""]
    lines.append(f"- operands: {_signature_names(opdef.operands)}")
    lines.append(f"- results: {_signature_names(opdef.results)}")
    if not opdef.pure:
        lines.append("- has side effects: CSE and DCE leave it alone")
    if opdef.attributes:
        lines += ["", "| attribute | kind | default | meaning |", "|---|---|---|---|"]
        for name, spec in opdef.attributes.items():
            lines.append(f"| `{name}` | {_kind(spec)} | {_default(spec)} | {_attr_doc(spec)} |")
    for paragraph in _prose(opdef)[1:]:
        lines += ["", paragraph]
    examples = example_lines(opdef)
    if examples:
        lines += ["", "```", *examples, "```"]
    return "\n".join(lines) + "\n"


def builtin_ops() -> dict[str, type[OpDef]]:
    """The ops cgpt itself declares (not ones a user's pass file registered in this process), by name."""
    return {n: o for n, o in all_ops().items() if o.__module__.startswith("cgpt.")}


def op_reference() -> str:
    """docs/ops.md: every built-in op, by level, in name order."""
    ops = builtin_ops()
    out = [
        "# Op reference",
        "",
        "Generated from the op registry by `python -m cgpt.ir.opdocs > docs/ops.md` (`make docs`); do not edit "
        "by hand. Each op is declared once, in `cgpt/ir/ops/`; its docstring gives the summary and the example.",
        "",
    ]
    for level, title, _ in LEVELS:
        names = [n for n, o in ops.items() if o.level == level]
        out += [f"- [{title}](#{title.lower().replace(' ', '-')}): " + ", ".join(f"`{n}`" for n in names)]
    for level, title, blurb in LEVELS:
        out += ["", f"## {title}", "", blurb]
        for opdef in ops.values():
            if opdef.level == level:
                out += ["", op_section(opdef).rstrip("\n")]
    known = {level for level, _, _ in LEVELS}
    stray = [n for n, o in ops.items() if o.level not in known]
    if stray:
        raise ValueError(f"ops of an unknown level: {', '.join(stray)}")
    return "\n".join(out) + "\n"


def example_module(opdef: type[OpDef]) -> str:
    """The op's docstring examples as a module that parses: each value they read becomes a function argument of
    the type the example gives it."""
    defined: set[str] = set()
    args: dict[str, str] = {}
    for line in example_lines(opdef):
        results, _, rest = line.partition("=")
        operand_text = rest[rest.find("(") + 1 : rest.find(")")] if "(" in rest.split(":")[0] else ""
        operands = _VALUE.findall(operand_text)
        functype = rest[rest.find(" : (") :] if " : (" in rest else ""
        operand_types = _TYPE.findall(functype.split("->")[0])
        for name, type_text in zip(operands, operand_types, strict=False):
            if name not in defined:
                args.setdefault(name, type_text)
        defined.update(_VALUE.findall(results))
    signature = ", ".join(f"{name}: {t}" for name, t in args.items())
    body = "\n".join(f"    {line}" for line in example_lines(opdef))
    return f"module @example {{\n  func @main({signature}) -> () {{\n{body}\n    return\n  }}\n}}\n"


def main() -> int:
    sys.stdout.write(op_reference())
    return 0


if __name__ == "__main__":
    sys.exit(main())
