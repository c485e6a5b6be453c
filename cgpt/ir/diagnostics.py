"""Errors of cgpt's own, each carrying a location a user can act on.

The CLI turns any `CgptError` into one `error: ...` line and exit code 1; everything else is a bug.
"""

from __future__ import annotations


class CgptError(Exception):
    """Base of every error cgpt reports to a user.

    `where` names the file, node or line (`model.onnx: node '/h.0/attn/MatMul'`, `m.cgir:3:7`); `detail` is
    extra context printed under the message (an IR excerpt, a caret line).
    """

    def __init__(self, message: str, where: str | None = None, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.where = where
        self.detail = detail

    def headline(self) -> str:
        """The one-line form: `WHERE: error: MESSAGE` (or `error: MESSAGE`)."""
        return f"{self.where}: error: {self.message}" if self.where else f"error: {self.message}"

    def __str__(self) -> str:
        return self.headline() + (f"\n{self.detail}" if self.detail else "")


class ParseError(CgptError):
    """A syntax error in IR text, located at FILE:LINE:COL."""


class VerifyError(CgptError):
    """An IR module breaks an invariant (types, dominance, attributes, placement)."""


class ModelImportError(CgptError):
    """An ONNX file cannot be imported (malformed, unsupported ops, bad external data)."""


class PassError(CgptError):
    """A pipeline string is wrong, a pass option is unknown, or a rewrite did not converge."""


class TargetError(CgptError):
    """A target description (TOML) is invalid."""


class CompileError(CgptError):
    """A model cannot be lowered to the target (does not fit, no placement)."""


class RunError(CgptError):
    """Inputs given to a backend do not match the program (names, shapes, dtypes)."""


class ExportError(CgptError):
    """A model cannot be built or exported to ONNX."""
