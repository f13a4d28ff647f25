"""The Python source a torch.export program's JSON carries, checked before torch reads it.

``torch.export.load`` evaluates two kinds of text from ``models/<name>.json`` (torch 2.13,
``torch/_export/serde/serialize.py`` and ``torch/export/_unlift.py``):

- every ``expr_str`` (symbolic sizes, e.g. ``Symbol('s77', positive=True, integer=True)``) goes
  through ``sympy.sympify``, which is ``eval``: ``Symbol.__new__.__globals__[...]`` reaches
  ``__import__`` and ran a payload on load;
- every ``guards_code`` line (e.g. ``L['x'].size()[1] == 28``) is compiled into the module's
  ``_guards_fn`` and ``exec``-ed on each call.

Both are checked against a whitelist grammar on Python's own parse tree: numbers, names,
arithmetic, comparisons and calls of named sympy/torch size functions only; no attribute access
except a few size methods in guards, no subscripts except ``L['x']`` and ``[0]``, no name or
string with a double underscore. Text outside it is refused, never evaluated.
"""

from __future__ import annotations

import ast
import re
from typing import Any, Iterator

#: sympy constructors that ``srepr`` writes and torch's symbolic size functions
#: (``torch/utils/_sympy/functions.py``); ``expr_str`` may call these and nothing else.
SYMPY_CALLS = frozenset(
    """Symbol Integer Float Rational Add Mul Pow Mod Max Min Abs floor ceiling sqrt Eq Ne Lt Le Gt Ge
    StrictLessThan StrictGreaterThan LessThan GreaterThan Equality Unequality And Or Not Piecewise
    ExprCondPair BooleanTrue BooleanFalse FloorDiv ModularIndexing Where PythonMod CleanDiv CeilToInt
    FloorToInt CeilDiv LShift RShift PowByNatural FloatPow FloatTrueDiv IntTrueDiv
    IsNonOverlappingAndDenseIndicator TruncToFloat TruncToInt RoundToInt RoundDecimal ToFloat Identity
    OpaqueUnaryFn_sqrt OpaqueUnaryFn_exp OpaqueUnaryFn_log BitwiseFn_bitwise_and BitwiseFn_bitwise_or
    BitwiseFn_bitwise_xor""".split()
)
#: bare names an ``expr_str`` may hold besides symbols such as ``s77`` or ``u0``
SYMPY_NAMES = frozenset("oo zoo nan pi E true false True False None".split())
SYMBOL = re.compile(r"[a-z]{1,8}[0-9]{0,12}")
#: what a guard line may name, and the methods it may call on an input
GUARD_NAMES = frozenset({"L", "math", "inf"})
GUARD_ATTRIBUTES = frozenset({"size", "stride", "storage_offset", "dim", "numel", "floor", "ceil", "sqrt", "trunc", "isnan", "isinf", "inf"})
GUARD_CALLS = frozenset({"IsNonOverlappingAndDenseIndicator", "Eq", "Ne", "Max", "Min", "Mod", "FloorDiv", "PythonMod"})
IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
NUMBER_TEXT = re.compile(r"[-+]?[0-9][0-9.eE+-]{0,63}")
MAX_CHARS = 10_000

_OPERATORS = (
    ast.Expression, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.Tuple, ast.Load,
    ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.BitXor, ast.BitAnd, ast.BitOr,
    ast.LShift, ast.RShift, ast.USub, ast.UAdd, ast.Not, ast.Invert, ast.And, ast.Or,
    ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE,
)


def unsafe_sympy(text: str) -> str | None:
    """None if ``text`` is a plain symbolic size expression, else what makes it unsafe."""
    return _check(text, _sympy_node)


def unsafe_guard(text: str) -> str | None:
    """None if ``text`` is a plain guard on input sizes, else what makes it unsafe."""
    return _check(text, _guard_node)


def unsafe_program_text(program: Any) -> str | None:
    """The first ``expr_str`` or ``guards_code`` entry of a parsed program JSON that is unsafe
    (as ``"<field> <text>: <reason>"``), or None."""
    for key, value in _strings(program):
        reason = unsafe_sympy(value) if key == "expr_str" else unsafe_guard(value)
        if reason:
            return f"{key} {value[:60]!r}: {reason}"
    return None


def _strings(value: Any) -> Iterator[tuple[str, str]]:
    """Every (key, text) under an ``expr_str`` or ``guards_code`` key, at any depth.

    A non-string value under those keys is yielded as its repr, which the grammar refuses."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                if key == "expr_str":
                    yield key, child if isinstance(child, str) else repr(child)
                elif key == "guards_code":
                    for line in child if isinstance(child, list) else [child]:
                        yield key, line if isinstance(line, str) else repr(line)
                else:
                    stack.append(child)
        elif isinstance(item, list):
            stack.extend(item)


def _check(text: str, allowed) -> str | None:
    if len(text) > MAX_CHARS:
        return f"longer than {MAX_CHARS} characters"
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return "not an expression"
    try:
        nodes = list(ast.walk(tree))
    except RecursionError:
        return "nested too deeply"
    for node in nodes:
        reason = _power(node) or (None if isinstance(node, _OPERATORS) else allowed(node))
        if reason:
            return reason
    return None


#: Integers beyond this are not tensor sizes; exponents and shifts beyond ``MAX_EXPONENT`` would
#: make sympy compute numbers with billions of digits (``Pow(9, Pow(9, 9))`` hangs the load).
MAX_INTEGER = 2**63
MAX_EXPONENT = 64


def _small_exponent(node: ast.AST) -> bool:
    """A symbol, or an integer literal (maybe wrapped in Integer(...) or negated) of at most MAX_EXPONENT."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        return _small_exponent(node.operand)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Integer" and len(node.args) == 1:
        return _small_exponent(node.args[0])
    if isinstance(node, ast.Name):
        return bool(SYMBOL.fullmatch(node.id))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Symbol":
        return True  # a size symbol: sympy keeps the power symbolic
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, str)) and not isinstance(node.value, bool):
        try:
            return abs(int(node.value)) <= MAX_EXPONENT
        except ValueError:
            return False
    return False


def _power(node: ast.AST) -> str | None:
    """Refuse a power or shift whose exponent is not small (see MAX_EXPONENT)."""
    exponent = None
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Pow, ast.LShift)):
        exponent = node.right
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in POWERS and len(node.args) >= 2:
        exponent = node.args[1]
    if exponent is None:
        return None
    if not _small_exponent(exponent):
        return f"a power or shift whose exponent is not a symbol or an integer up to {MAX_EXPONENT}"
    if any(_is_power(inner) for inner in ast.walk(node) if inner is not node):
        return "a power of a power (the digits multiply: ((10**64)**64)**64 … hangs sympy)"
    return None


def _is_power(node: ast.AST) -> bool:
    return (isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Pow, ast.LShift))) or (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in POWERS)


POWERS = frozenset({"Pow", "PowByNatural", "FloatPow", "LShift"})


def _constant(node: ast.Constant) -> str | None:
    value = node.value
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INTEGER:
        return f"integer beyond {MAX_INTEGER}"
    if isinstance(value, str) and NUMBER_TEXT.fullmatch(value) and len(value) > 24:
        return "number text longer than 24 characters"
    if isinstance(value, str) and not ((IDENTIFIER.fullmatch(value) and "__" not in value) or NUMBER_TEXT.fullmatch(value)):
        return f"string {value[:20]!r} is neither a symbol name nor a number"
    if value is not None and not isinstance(value, (bool, int, float, str)):
        return f"constant of type {type(value).__name__}"
    return None


def _sympy_node(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant):
        return _constant(node)
    if isinstance(node, ast.Call):
        if not (isinstance(node.func, ast.Name) and node.func.id in SYMPY_CALLS):
            return "calls something other than a sympy size function"
        return None
    if isinstance(node, ast.keyword):
        return None if node.arg and IDENTIFIER.fullmatch(node.arg) and "__" not in node.arg else "odd keyword"
    if isinstance(node, ast.Name):
        if node.id in SYMPY_CALLS or node.id in SYMPY_NAMES or SYMBOL.fullmatch(node.id):
            return None
        return f"name {node.id[:20]!r}"
    return f"{type(node).__name__} is not allowed"


def _guard_node(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant):
        return _constant(node)
    if isinstance(node, ast.Name):
        return None if node.id in GUARD_NAMES or node.id in GUARD_CALLS else f"name {node.id[:20]!r}"
    if isinstance(node, ast.Attribute):
        return None if node.attr in GUARD_ATTRIBUTES else f"attribute {node.attr[:20]!r}"
    if isinstance(node, ast.Subscript):
        return None if isinstance(node.slice, ast.Constant) else "computed subscript"
    if isinstance(node, ast.Call):
        if node.keywords:
            return "keyword arguments"
        func = node.func
        if isinstance(func, ast.Attribute) or (isinstance(func, ast.Name) and func.id in GUARD_CALLS):
            return None
        return "calls something other than a size method"
    return f"{type(node).__name__} is not allowed"
