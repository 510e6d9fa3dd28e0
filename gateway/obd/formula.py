"""User formulas over the bytes of an answer, Torque-style, parsed into a safe program (never ``eval``).

Grammar (case-insensitive function names, letters are upper case)::

    expr    := term (('+' | '-' | '&' | '|' | '<<' | '>>') term)*      (C precedence: shifts, &, | below +/-)
    term    := unary (('*' | '/') unary)*
    unary   := '-' unary | atom
    atom    := NUMBER | 0xHEX | LETTER | '[' INT ']' | '{' byteref ':' BIT '}' | NAME '(' args ')' | '(' expr ')'
    byteref := LETTER | '[' INT ']'

* ``A`` … ``Z`` are the answer's data bytes 0 … 25, ``[n]`` any byte (0-based, ``[0]`` is ``A``) of a
  long answer (up to 4095 bytes). The data starts after the echoed service byte and the echoed PID
  (service 01 and 21: one byte) or DID (service 22: two bytes), as in Torque Pro's extended PIDs.
* ``{A:7}`` is bit 7 (0 = least significant) of A, Torque's bit syntax.
* ``signed(x)`` reads ``x`` as an 8-bit two's complement number (Torque's ``Signed(A)``);
  ``signed(x, 16)`` as a 16-bit one (``signed(A*256+B, 16)``); widths 8, 16, 24, 32.
* ``min(a, b)``, ``max(a, b)``, ``abs(x)``.

:func:`compile_formula` gives a :class:`Formula`: the text, a postfix program (two tuples, opcodes and
arguments) and the highest byte index it reads. Both parser builds evaluate the program
(``parser.eval_formula(ops, args, data)``) the same way, IEEE doubles step by step: a byte the answer does
not have raises ``ParseError``; a division by zero or a bitwise operation on a non-integer-sized value
gives NaN, which the poller counts and drops. A bad formula raises :class:`FormulaError` with the
0-based character position of the problem. Division by a constant zero is refused when compiling.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from gateway.errors import FormulaError

# opcodes (shared with both parser builds: gateway/obd/pyparser.py eval_formula, native/parser.pyx)
OP_CONST = 0
OP_BYTE = 1
OP_BIT = 2
OP_ADD = 3
OP_SUB = 4
OP_MUL = 5
OP_DIV = 6
OP_NEG = 7
OP_AND = 8
OP_OR = 9
OP_SHL = 10
OP_SHR = 11
OP_SIGNED = 12
OP_MIN = 13
OP_MAX = 14
OP_ABS = 15

MAX_TEXT = 512
MAX_STACK = 32  # both builds evaluate with a fixed stack of this depth
MAX_INDEX = 4094  # the last data byte of a 4095-byte ISO-TP message

_TOKEN = re.compile(
    r"\s*(?:(?P<num>0[xX][0-9A-Fa-f]+|\d+\.\d*|\.\d+|\d+)|(?P<name>[A-Za-z_][A-Za-z_0-9]*)"
    r"|(?P<op><<|>>|[-+*/&|()\[\]{}:,]))"
)
_BINARY = {"+": OP_ADD, "-": OP_SUB, "*": OP_MUL, "/": OP_DIV, "&": OP_AND, "|": OP_OR, "<<": OP_SHL, ">>": OP_SHR}
# lowest first; each level is left-associative
_LEVELS: tuple[frozenset[str], ...] = (
    frozenset({"|"}),
    frozenset({"&"}),
    frozenset({"<<", ">>"}),
    frozenset({"+", "-"}),
    frozenset({"*", "/"}),
)
_FUNCS = {"signed": (1, 2), "min": (2, 2), "max": (2, 2), "abs": (1, 1)}


@dataclass(frozen=True, slots=True)
class Formula:
    """A compiled formula: postfix ``ops``/``args`` for ``parser.eval_formula``."""

    text: str
    ops: tuple[int, ...]
    args: tuple[float, ...]
    #: the highest byte index read (-1: none); the answer must carry at least ``max_index + 1`` data bytes
    max_index: int


# the tree: ("num", value) | ("byte", index) | ("bit", node, bit) | (op, left, right) | ("neg", x) |
# ("signed", x, bits) | ("min"|"max", a, b) | ("abs", x)
Node = tuple[object, ...]


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str, int]] = []
        pos = 0
        while pos < len(text):
            while pos < len(text) and text[pos].isspace():
                pos += 1
            if pos == len(text):
                break
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                raise FormulaError(f"unexpected character {text[pos]!r}", pos)
            kind = m.lastgroup or ""
            value = m.group(kind)
            self.tokens.append((kind, value, m.start(kind)))
            pos = m.end()
        self.i = 0

    def peek(self) -> tuple[str, str, int]:
        return self.tokens[self.i] if self.i < len(self.tokens) else ("end", "", len(self.text))

    def take(self, value: str) -> int:
        kind, tok, pos = self.peek()
        if kind != "op" or tok != value:
            found = "the end" if kind == "end" else repr(tok)
            raise FormulaError(f"expected {value!r}, found {found}", pos)
        self.i += 1
        return pos

    def parse(self) -> Node:
        node = self.level(0)
        kind, tok, pos = self.peek()
        if kind != "end":
            raise FormulaError(f"unexpected {tok!r}", pos)
        return node

    def level(self, n: int) -> Node:
        if n == len(_LEVELS):
            return self.unary()
        node = self.level(n + 1)
        while True:
            kind, tok, pos = self.peek()
            if kind != "op" or tok not in _LEVELS[n]:
                return node
            self.i += 1
            right = self.level(n + 1)
            if tok == "/" and _constant(right) == 0.0:
                raise FormulaError("division by zero", pos)
            node = (tok, node, right)

    def unary(self) -> Node:
        kind, tok, _ = self.peek()
        if kind == "op" and tok == "-":
            self.i += 1
            return ("neg", self.unary())
        if kind == "op" and tok == "+":
            self.i += 1
            return self.unary()
        return self.atom()

    def index(self) -> Node:
        self.take("[")
        kind, tok, tpos = self.peek()
        if kind != "num" or not tok.isdigit():
            raise FormulaError("expected a byte index", tpos)
        self.i += 1
        n = int(tok)
        if n > MAX_INDEX:
            raise FormulaError(f"byte index {n} beyond the longest answer ({MAX_INDEX})", tpos)
        self.take("]")
        return ("byte", n)

    def byteref(self) -> Node:
        kind, tok, pos = self.peek()
        if kind == "op" and tok == "[":
            return self.index()
        if kind == "name" and len(tok) == 1 and tok.isupper():
            self.i += 1
            return ("byte", ord(tok) - ord("A"))
        raise FormulaError("expected a byte (A-Z or [n])", pos)

    def atom(self) -> Node:
        kind, tok, pos = self.peek()
        if kind == "num":
            self.i += 1
            return ("num", float(int(tok, 16)) if tok[:2].lower() == "0x" else float(tok))
        if kind == "op" and tok == "(":
            self.i += 1
            node = self.level(0)
            self.take(")")
            return node
        if kind == "op" and tok == "[":
            return self.index()
        if kind == "op" and tok == "{":
            self.i += 1
            ref = self.byteref()
            self.take(":")
            bkind, btok, bpos = self.peek()
            if bkind != "num" or not btok.isdigit() or int(btok) > 7:
                raise FormulaError("expected a bit number 0-7", bpos)
            self.i += 1
            self.take("}")
            return ("bit", ref, int(btok))
        if kind == "name":
            if len(tok) == 1 and tok.isupper():
                self.i += 1
                return ("byte", ord(tok) - ord("A"))
            fname = tok.lower()
            if fname not in _FUNCS:
                raise FormulaError(f"unknown name {tok!r}", pos)
            self.i += 1
            self.take("(")
            args = [self.level(0)]
            while self.peek()[:2] == ("op", ","):
                self.i += 1
                args.append(self.level(0))
            lo, hi = _FUNCS[fname]
            if not lo <= len(args) <= hi:
                raise FormulaError(f"{tok}() takes {lo if lo == hi else f'{lo} or {hi}'} argument(s)", pos)
            self.take(")")
            if fname == "signed":
                bits = 8.0 if len(args) == 1 else _constant(args[1])
                if bits not in (8.0, 16.0, 24.0, 32.0):
                    raise FormulaError("signed() width must be 8, 16, 24 or 32", pos)
                return ("signed", args[0], int(bits))
            return (fname, *args)
        found = "the end" if kind == "end" else repr(tok)
        raise FormulaError(f"unexpected {found}", pos)


def _constant(node: Node) -> float | None:
    """The value of a subtree without byte references (None when it reads bytes)."""
    tag = node[0]
    if tag == "num":
        return float(node[1])  # type: ignore[arg-type]
    if tag in ("byte", "bit"):
        return None
    ops, args = _emit(node)
    if OP_BYTE in ops or OP_BIT in ops:
        return None
    return _run(ops, args, b"")


def _emit(node: Node) -> tuple[tuple[int, ...], tuple[float, ...]]:
    ops: list[int] = []
    args: list[float] = []

    def walk(n: Node) -> None:
        tag = n[0]
        if tag == "num":
            ops.append(OP_CONST)
            args.append(float(n[1]))  # type: ignore[arg-type]
        elif tag == "byte":
            ops.append(OP_BYTE)
            args.append(float(n[1]))  # type: ignore[arg-type]
        elif tag == "bit":
            walk(n[1])  # type: ignore[arg-type]
            ops.append(OP_BIT)
            args.append(float(n[2]))  # type: ignore[arg-type]
        elif tag in ("neg", "abs"):
            walk(n[1])  # type: ignore[arg-type]
            ops.append(OP_NEG if tag == "neg" else OP_ABS)
            args.append(0.0)
        elif tag == "signed":
            walk(n[1])  # type: ignore[arg-type]
            ops.append(OP_SIGNED)
            args.append(float(n[2]))  # type: ignore[arg-type]
        else:
            walk(n[1])  # type: ignore[arg-type]
            walk(n[2])  # type: ignore[arg-type]
            ops.append({"min": OP_MIN, "max": OP_MAX}.get(str(tag), _BINARY.get(str(tag), -1)))
            args.append(0.0)

    walk(node)
    return tuple(ops), tuple(args)


def _depth(ops: tuple[int, ...]) -> int:
    depth = best = 0
    for op in ops:
        if op in (OP_CONST, OP_BYTE):
            depth += 1
        elif op not in (OP_BIT, OP_NEG, OP_SIGNED, OP_ABS):
            depth -= 1
        best = max(best, depth)
    return best


def _run(ops: tuple[int, ...], args: tuple[float, ...], data: bytes) -> float:
    from gateway.obd import pyparser  # the reference evaluator; the selected build is used at run time

    return float(pyparser.eval_formula(ops, args, data))


def compile_formula(text: str) -> Formula:
    """Parse ``text`` into a :class:`Formula`; :class:`FormulaError` names the position of a mistake."""
    if not isinstance(text, str) or not text.strip():
        raise FormulaError("empty formula", 0)
    if len(text) > MAX_TEXT:
        raise FormulaError(f"formula longer than {MAX_TEXT} characters", MAX_TEXT)
    tree = _Parser(text).parse()
    ops, args = _emit(tree)
    if _depth(ops) > MAX_STACK:
        raise FormulaError(f"formula nested deeper than {MAX_STACK}", 0)
    reads = [int(a) for o, a in zip(ops, args, strict=True) if o == OP_BYTE]
    return Formula(text, ops, args, max(reads, default=-1))


def finite(value: float) -> bool:
    """Whether an evaluated value is usable (not NaN or infinite)."""
    return math.isfinite(value)


__all__ = ["Formula", "FormulaError", "compile_formula", "finite"]
