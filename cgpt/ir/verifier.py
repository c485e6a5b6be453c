"""The verifier: SSA dominance, operand and attribute declarations, inferred result types, op-specific checks.

    verify_module(module)   # raises VerifyError showing the offending op and its location
"""

from __future__ import annotations

from cgpt.ir.builder import KnownValues, check_result_types, fold_known, make_context
from cgpt.ir.core import Function, Module, Operation, Value
from cgpt.ir.diagnostics import VerifyError
from cgpt.ir.printer import Namer, format_loc, format_op
from cgpt.ir.registry import check_attr_value, function_checks, lookup_op


def verify_module(module: Module) -> None:
    """Check every function of `module`; raise the first problem found as a VerifyError."""
    names = [fn.name for fn in module.functions]
    if len(set(names)) != len(names):
        raise VerifyError(f"module @{module.name} defines a function twice")
    for fn in module.functions:
        verify_function(fn)


def verify_function(fn: Function) -> None:
    defined: set[Value] = set(fn.args)
    known = KnownValues()
    for op in fn.ops:
        try:
            _verify_op(op, defined, known)
        except VerifyError as err:
            raise _at_op(err, op, fn) from None
        defined.update(op.results)
    for i, v in enumerate(fn.outputs):
        if v not in defined:
            raise VerifyError(f"function @{fn.name} returns value #{i} that is not defined in it")
    if len(fn.output_names) != len(fn.outputs) or len(set(fn.output_names)) != len(fn.output_names):
        raise VerifyError(f"function @{fn.name} needs one distinct name per returned value")
    for check in function_checks():
        check(fn)


def _verify_op(op: Operation, defined: set[Value], known: KnownValues) -> None:
    opdef = lookup_op(op.name)
    if opdef is None:
        raise VerifyError(f"unknown op '{op.name}'")
    for i, v in enumerate(op.operands):
        if v not in defined:
            raise VerifyError(f"operand #{i} of '{op.name}' is used before it is defined (or is not in this function)")
    low, high = opdef.operand_arity()
    n = len(op.operands)
    if n < low or (high is not None and n > high):
        want = f"{low}" if high == low else f"{low} to {high if high is not None else 'any number of'}"
        raise VerifyError(f"'{op.name}' takes {want} operands, got {n}")
    for key, value in op.attributes.items():
        spec = opdef.attributes.get(key)
        if spec is None:
            allowed = ", ".join(opdef.attributes) or "none"
            raise VerifyError(f"'{op.name}' has no attribute '{key}' (allowed: {allowed})")
        if value is None and not spec.required and spec.default is None:
            continue
        problem = check_attr_value(key, spec, value)
        if problem:
            raise VerifyError(f"'{op.name}': {problem}")
    for key, spec in opdef.attributes.items():
        if spec.required and key not in op.attributes:
            raise VerifyError(f"'{op.name}' needs attribute '{key}'")
    ctx = make_context(op.name, list(op.operands), op.attributes, known, op.loc)
    if op.name != "weight":
        check_result_types(op, opdef.infer(ctx))
    opdef.verify(op)
    for r, arr in zip(op.results, fold_known(op.name, ctx, [r.type for r in op.results]), strict=True):
        if arr is not None:
            known.set(r, arr)


def _at_op(err: VerifyError, op: Operation, fn: Function) -> VerifyError:
    """The same error, located at the op and showing it in text form."""
    where = err.where or (format_loc(op.loc) if op.loc.names else f"@{fn.name}")
    try:
        text = format_op(op, Namer(fn))
    except Exception:  # a broken op may not print; the message still stands
        text = op.name
    return VerifyError(err.message, where=where, detail=f"  {text}\n  ^ {err.message}")
