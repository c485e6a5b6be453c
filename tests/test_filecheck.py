"""Runs the textual pass tests in tests/filecheck/: each `// RUN:` line is a shell pipeline, `%s` the file.

    // RUN: cgpt-opt %s -p cse | filecheck %s
    // RUN: not cgpt-opt %s -p nope 2>&1 | filecheck %s --check-prefix=ERR
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent / "filecheck"
CASES = sorted(ROOT.rglob("*.cgir"))


def run_lines(path: Path) -> list[str]:
    lines = []
    for raw in path.read_text().splitlines():
        raw = raw.strip()
        if raw.startswith("// RUN:"):
            lines.append(raw[len("// RUN:") :].strip().replace("%s", str(path)))
    return lines


@pytest.mark.parametrize("path", CASES, ids=[str(p.relative_to(ROOT)) for p in CASES])
def test_filecheck(path: Path) -> None:
    runs = run_lines(path)
    assert runs, f"{path} has no RUN line"
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    for cmd in runs:
        script = f"set -o pipefail\nnot() {{ ! \"$@\"; }}\n{cmd}"
        proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, cwd=path.parent)
        assert proc.returncode == 0, f"RUN: {cmd}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
