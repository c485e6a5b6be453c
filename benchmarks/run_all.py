"""`make bench`: run every benchmark and rewrite benchmarks/RESULTS.md (machine and date at the top).

Each benchmarks/bench_*.py has `run() -> str` returning a markdown section. Speed figures are ratios against a
peer measured in the same script, quoted as medians of several runs.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from pathlib import Path

from benchmarks.machine import machine_lines
from cgpt.ir.files import write_text_atomic

HERE = Path(__file__).parent


def main(argv: list[str]) -> int:
    names = argv or sorted(p.stem for p in HERE.glob("bench_*.py"))
    sections = []
    failed = 0
    for name in names:
        print(f"== {name}", file=sys.stderr, flush=True)
        try:
            sections.append(importlib.import_module(f"benchmarks.{name}").run())
        except Exception:
            failed += 1
            sections.append(f"## {name}\n\nFAILED:\n```\n{traceback.format_exc()}```\n")
    if argv and (HERE / "RESULTS.md").exists():  # a subset rerun replaces its own sections, keeps the rest
        sections = _merge(_sections((HERE / "RESULTS.md").read_text()), sections)
    head = "# Benchmark results\n\nWritten by `make bench`.\n\n" + "\n".join(machine_lines())
    text = head + "\n\n" + "\n".join(sections)
    write_text_atomic(HERE / "RESULTS.md", text)
    print(text)
    return 1 if failed else 0


def _sections(text: str) -> list[str]:
    """The `## ` sections of a RESULTS.md, each with its heading."""
    parts = text.split("\n## ")[1:]
    return ["## " + p.rstrip("\n") + "\n" for p in parts]


def _merge(old: list[str], new: list[str]) -> list[str]:
    fresh = {s.splitlines()[0]: s for s in new}
    merged = [fresh.pop(s.splitlines()[0], s) for s in old]
    return merged + list(fresh.values())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
