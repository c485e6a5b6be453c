"""Parse and print a generated module of 20,000 typical ops; xDSL parses the same module in MLIR generic form."""

from __future__ import annotations

from benchmarks.machine import median_seconds
from cgpt.ir.parser import parse_module
from cgpt.ir.printer import print_module

N_OPS = 20_000
T2 = "tensor<64x64xf32>"
T1 = "tensor<64xf32>"


def cgpt_text(n: int = N_OPS) -> str:
    lines = ["module @bench {", f"  func @main(%a: {T2}, %b: {T2}, %c: {T1}) -> ({T2}) {{"]
    prev = "%a"
    for i in range(n):
        lines.append(
            f"    %{i} = gemm({prev}, %b, %c) {{alpha = 1.0, beta = 0.5, transA = 0, transB = 1}} : "
            f'({T2}, {T2}, {T1}) -> {T2} loc("/transformer/h.{i // 100}/mlp/Gemm_{i}")'
        )
        prev = f"%{i}"
    lines += [f"    return {prev} : {T2}", "  }", "}", ""]
    return "\n".join(lines)


def xdsl_text(n: int = N_OPS) -> str:
    lines = ['"builtin.module"() ({', f'^bb0(%a: {T2}, %b: {T2}, %c: {T1}):']
    prev = "%a"
    for i in range(n):
        lines.append(
            f'  %{i} = "onnx.Gemm"({prev}, %b, %c) {{alpha = 1.000000e+00 : f32, beta = 5.000000e-01 : f32, '
            f"transA = 0 : i64, transB = 1 : i64}} : ({T2}, {T2}, {T1}) -> {T2} "
            f'loc("/transformer/h.{i // 100}/mlp/Gemm_{i}")'
        )
        prev = f"%{i}"
    lines += ["}) : () -> ()", ""]
    return "\n".join(lines)


def run() -> str:
    text = cgpt_text()
    module = parse_module(text)
    assert print_module(module) == text
    parse_s = median_seconds(lambda: parse_module(text), repeat=3)
    print_s = median_seconds(lambda: print_module(module), repeat=5)
    rows = [
        "| what | seconds (median) | ops/s | target |",
        "|---|---|---|---|",
        f"| cgpt print | {print_s:.3f} | {N_OPS / print_s:,.0f} | >= 50,000 |",
        f"| cgpt parse (lark LALR, inline transformer) | {parse_s:.3f} | {N_OPS / parse_s:,.0f} "
        "| >= 2,000 (aim 5,000) |",
    ]
    try:
        from xdsl.context import Context
        from xdsl.dialects.builtin import Builtin
        from xdsl.parser import Parser

        ctx = Context(allow_unregistered=True)
        ctx.load_dialect(Builtin)
        xtext = xdsl_text()
        xdsl_s = median_seconds(lambda: Parser(ctx, xtext).parse_module(), repeat=3)
        rows.append(f"| xDSL parse (MLIR generic form) | {xdsl_s:.3f} | {N_OPS / xdsl_s:,.0f} | peer |")
        rows.append(f"\ncgpt parse is {xdsl_s / parse_s:.2f}x xDSL's speed on the same {N_OPS:,} ops.")
    except ImportError:
        rows.append("\n(xDSL is not installed: `pip install xdsl` for the peer comparison.)")
    return "## IR text: print and parse\n\n" + "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(run())
