"""cgpt: one entry point with the four tools as subcommands (`cgpt opt ...` is `cgpt-opt ...`)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from cgpt import __version__

TOOLS = {"export": "cgpt.cli.export", "compile": "cgpt.cli.compile", "opt": "cgpt.cli.opt", "run": "cgpt.cli.run"}
USAGE = f"""usage: cgpt {{{','.join(TOOLS)}}} [ARGS...]

  cgpt export   build a Cerebras-GPT (random weights) and export it to ONNX
  cgpt compile  compile an ONNX model for the mesh target (or the reference backend)
  cgpt opt      run a pass pipeline over IR
  cgpt run      run a model on the reference backend, onnxruntime or the mesh simulator

`cgpt TOOL --help` shows each tool's options. Exit codes: 0 ok, 1 error, 2 usage, 3 internal error."""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else 2
    if args[0] == "--version":
        print(f"cgpt {__version__}")
        return 0
    module = TOOLS.get(args[0])
    if module is None:
        print(f"error: unknown tool '{args[0]}'; choose one of: {', '.join(TOOLS)}", file=sys.stderr)
        return 2
    return int(importlib.import_module(module).main(args[1:]))


if __name__ == "__main__":
    sys.exit(main())
