"""A parser for the subset of Xero's `where` filter language the sandbox supports.

    expr    := term (("OR" | "||") term)*
    term    := factor (("AND" | "&&") factor)*
    factor  := "(" expr ")" | field op value
    op      := "==" | "!=" | ">=" | "<=" | ">" | "<"
    value   := "text" | DateTime(y, m, d[, h, mi, s]) | Guid("uuid") | number | true | false

Anything outside it raises `WhereError`, which the API answers with Xero's 400 ValidationException.
"""

from __future__ import annotations

import operator
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<op>==|!=|>=|<=|>|<|&&|\|\|)
      | (?P<paren>[()])
      | (?P<comma>,)
      | (?P<number>-?\d+(?:\.\d+)?)
      | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
    )""",
    re.VERBOSE,
)

OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}


class WhereError(ValueError):
    """The filter is not one the sandbox (or Xero) accepts."""


@dataclass(frozen=True)
class Comparison:
    field: str
    op: str
    value: Any


@dataclass(frozen=True)
class BoolOp:
    op: str  # "AND" | "OR"
    items: tuple[Node, ...]


Node = Comparison | BoolOp


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise WhereError(f"Unexpected character at position {position} of the where filter")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.position = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def take(self, kind: str | None = None, value: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (kind and token[0] != kind) or (value and token[1].upper() != value):
            found = token[1] if token else "end of filter"
            raise WhereError(f"Expected {value or kind} in the where filter, found {found!r}")
        self.position += 1
        return token

    def parse(self) -> Node:
        node = self.expr()
        if self.peek() is not None:
            raise WhereError(f"Unexpected {self.peek()[1]!r} in the where filter")  # type: ignore[index]
        return node

    def _is(self, *words: str) -> bool:
        token = self.peek()
        return token is not None and token[0] in ("word", "op") and token[1].upper() in words

    def expr(self) -> Node:
        items = [self.term()]
        while self._is("OR", "||"):
            self.position += 1
            items.append(self.term())
        return items[0] if len(items) == 1 else BoolOp("OR", tuple(items))

    def term(self) -> Node:
        items = [self.factor()]
        while self._is("AND", "&&"):
            self.position += 1
            items.append(self.factor())
        return items[0] if len(items) == 1 else BoolOp("AND", tuple(items))

    def factor(self) -> Node:
        token = self.peek()
        if token == ("paren", "("):
            self.position += 1
            node = self.expr()
            self.take("paren", ")")
            return node
        field = self.take("word")[1]
        op = self.take("op")[1]
        if op not in OPERATORS:
            raise WhereError(f"Operator {op!r} cannot compare a field")
        return Comparison(field, op, self.value())

    def value(self) -> Any:
        kind, text = self.take()
        if kind == "string":
            return text[1:-1].replace('\\"', '"')
        if kind == "number":
            return Decimal(text)
        if kind == "word" and text.lower() in ("true", "false"):
            return text.lower() == "true"
        if kind == "word" and text in ("DateTime", "DateTimeUTC", "Guid"):
            self.take("paren", "(")
            args = [self.take()[1]]
            while self.peek() == ("comma", ","):
                self.position += 1
                args.append(self.take()[1])
            self.take("paren", ")")
            return _call(text, args)
        raise WhereError(f"Unsupported value {text!r} in the where filter")


def _call(function: str, args: list[str]) -> Any:
    if function == "Guid":
        try:
            return str(uuid.UUID(args[0].strip('"')))
        except ValueError as error:
            raise WhereError(f"Guid({args[0]}) is not a valid GUID") from error
    try:
        parts = [int(a) for a in args]
        if len(parts) == 3:
            return date(*parts)
        if len(parts) in (4, 5, 6):
            return datetime(*parts, tzinfo=UTC)  # type: ignore[misc,arg-type]
    except (ValueError, TypeError) as error:
        raise WhereError(f"{function}({', '.join(args)}) is not a valid date") from error
    raise WhereError(f"{function} takes year, month, day and optionally hour, minute, second")


def parse_where(text: str) -> Node:
    """Parse a `where` filter or raise WhereError."""
    if not text.strip():
        raise WhereError("The where filter is empty")
    return _Parser(text).parse()


FieldAccess = Callable[[Any], Any]


def compile_where(
    node: Node, fields: Mapping[str, tuple[FieldAccess, Callable[[Any], Any]]]
) -> Callable[[Any], bool]:
    """A predicate for `node`; `fields` maps a field name (case-insensitive) to (accessor, converter
    of the literal to the accessor's type)."""
    lookup = {name.lower(): spec for name, spec in fields.items()}
    if isinstance(node, BoolOp):
        parts = [compile_where(item, fields) for item in node.items]
        if node.op == "AND":
            return lambda item: all(part(item) for part in parts)
        return lambda item: any(part(item) for part in parts)
    spec = lookup.get(node.field.lower())
    if spec is None:
        raise WhereError(f"No property or field '{node.field}' exists or can be filtered on")
    access, convert = spec
    try:
        literal = convert(node.value)
    except (ValueError, TypeError, InvalidOperation) as error:
        raise WhereError(f"{node.value!r} cannot be compared with {node.field}") from error
    compare = OPERATORS[node.op]
    return lambda item: compare(access(item), literal)
