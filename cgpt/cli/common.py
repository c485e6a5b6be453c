"""What every cgpt command shares: --version, --debug, --quiet, and turning errors into one `error:` line.

Exit codes: 0 success; 1 an input or compile error (one `error:` line naming the file, node or line);
2 a usage error (argparse); 3 an internal error (a bug: rerun with --debug for the traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence

from cgpt import __version__
from cgpt.ir.diagnostics import CgptError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3

EXIT_CODES_HELP = (
    "exit codes: 0 success, 1 input or compile error (one 'error:' line), 2 usage error, "
    "3 internal error (rerun with --debug)"
)


def make_parser(prog: str, description: str, examples: str) -> argparse.ArgumentParser:
    """An argparse parser with the options every cgpt command has."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=f"examples:\n{examples}\n\n{EXIT_CODES_HELP}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{prog} (cgpt) {__version__}")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks for errors")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or notes on stderr")
    return parser


def run_command(
    parser: argparse.ArgumentParser, body: Callable[[argparse.Namespace], int | None], argv: Sequence[str] | None
) -> int:
    """Parse `argv`, run `body`, and map failures to the documented exit codes."""
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    try:
        return int(body(args) or EXIT_OK)
    except CgptError as err:
        if args.debug:
            raise
        print(err.headline(), file=sys.stderr)
        if err.detail and not args.quiet:
            print(err.detail, file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: say so in one line, traceback only with --debug
        if args.debug:
            raise
        print(f"error: internal error: {type(exc).__name__}: {exc} (rerun with --debug)", file=sys.stderr)
        return EXIT_INTERNAL


def parse_shape_arg(text: str) -> tuple[str, tuple[int, ...]]:
    """One `--shape NAME=DIMS` value (`input_ids=1x128`); an argparse type: a bad value is a usage error."""
    name, sep, dims = text.partition("=")
    try:
        shape = tuple(int(d) for d in dims.split("x"))
    except ValueError:
        shape = ()
    if not sep or not name or not shape or any(d <= 0 for d in shape):
        raise argparse.ArgumentTypeError(f"bad shape '{text}': expected NAME=DIMS with positive dims, "
                                         f"such as input_ids=1x128")
    return name, shape


def parse_shape_args(
    values: Sequence[str | tuple[str, tuple[int, ...]]] | None,
) -> dict[str, tuple[int, ...]]:
    """`--shape` values (strings or parsed pairs) as {input: dims}; a name given twice is a usage error."""
    shapes: dict[str, tuple[int, ...]] = {}
    for value in values or ():
        name, shape = parse_shape_arg(value) if isinstance(value, str) else value
        if name in shapes and shapes[name] != shape:
            raise argparse.ArgumentTypeError(f"--shape gives input '{name}' twice")
        shapes[name] = shape
    return shapes


def add_shape_option(parser: argparse.ArgumentParser) -> None:
    """The shared `--shape NAME=DIMS` option (repeatable)."""
    parser.add_argument("--shape", action="append", type=parse_shape_arg, default=[], metavar="NAME=DIMS",
                        help="specialise an input to static dims, e.g. input_ids=1x128 (repeatable)")


def progress_enabled(args: argparse.Namespace) -> bool:
    """Progress bars go to stderr, only on a terminal, and never with --quiet (stdout carries results only)."""
    return sys.stderr.isatty() and not getattr(args, "quiet", False)


@contextlib.contextmanager
def stage_progress(total: int, enabled: bool) -> Iterator[Callable[[str], None]]:
    """A callback `on_stage(name)` that draws a tqdm bar of `total` stages on stderr (or does nothing)."""
    if not enabled:
        yield lambda _stage: None
        return
    from tqdm import tqdm

    with tqdm(total=total, file=sys.stderr, bar_format="{desc:<24} {bar} {n}/{total} {elapsed}") as bar:

        def on_stage(stage: str) -> None:
            if bar.desc:  # the previous stage is done
                bar.update(1)
            bar.set_description_str(stage[:24])

        yield on_stage
        bar.update(bar.total - bar.n)
