"""Totals of a group of rows in a mapping: `sum(quantity * price)`, `round(sum(x), 2)`, `count()`...

`parse_total` turns the text into a small tree (validated: only known aggregates, arithmetic on
columns and numbers); `collect.files.sql` renders the tree as SQL. The grammar:

    total  := sum(expr) | min(col) | max(col) | distinct(col) | count() | round(total, digits)
    expr   := term (("+" | "-") term)*        term := factor (("*" | "/") factor)*
    factor := number | col | "-" factor | "(" expr ")"     col := name | "name with spaces"
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

AGGREGATES = ("sum", "min", "max", "distinct", "count", "round")


def parse_total(text: str, use: Callable[[str], str], fail: Callable[[str], Exception]) -> tuple[Any, ...]:
    """Parse one total; `use` records a column reference, `fail` builds the error to raise."""
    return _TotalParser(text, use, fail).parse()


_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|\"(?P<quoted>[^\"]+)\"|(?P<op>[-+*/(),]))"
)


class _TotalParser:
    """Parses `sum(expr)`, `min(col)`, `max(col)`, `distinct(col)`, `count()` and
    `round(total, digits)`, where expr is arithmetic (+ - * / parentheses, numbers) over columns."""

    def __init__(self, text: str, use: Any, fail: Any):
        self.text, self.use, self.fail = text, use, fail
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _TOKEN.match(text, pos)
            if not m:
                raise fail(f"cannot read {text[pos:]!r} in {text!r}")
            kind = m.lastgroup or ""
            self.tokens.append(("name" if kind == "quoted" else kind, m.group(kind)))
            pos = m.end()
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (expected is not None and tok[1] != expected):
            raise self.fail(f"expected {expected or 'more'} in {self.text!r}; aggregates: {', '.join(AGGREGATES)}")
        self.i += 1
        return tok

    def parse(self) -> tuple[Any, ...]:
        tree = self.total()
        if self.peek() is not None:
            raise self.fail(f"unexpected {self.peek()[1]!r} in {self.text!r}")  # type: ignore[index]
        return tree

    def total(self) -> tuple[Any, ...]:
        kind, name = self.take()
        if kind != "name" or name not in AGGREGATES:
            raise self.fail(f"{self.text!r} must start with one of {', '.join(AGGREGATES)}")
        self.take("(")
        if name == "count":
            self.take(")")
            return ("count",)
        if name == "round":
            inner = self.total()
            self.take(",")
            kind, digits = self.take()
            if kind != "num" or "." in digits:
                raise self.fail(f"round(total, DIGITS) needs a whole number of digits in {self.text!r}")
            self.take(")")
            return ("round", inner, int(digits))
        if name == "sum":
            expr = self.expr()
            self.take(")")
            return ("sum", expr)
        kind, column = self.take()
        if kind != "name":
            raise self.fail(f"{name}() takes one column name in {self.text!r}")
        self.take(")")
        return (name, self.use(column))

    def expr(self) -> tuple[Any, ...]:
        left = self.term()
        while self.peek() is not None and self.peek()[1] in "+-":  # type: ignore[index]
            op = self.take()[1]
            left = ("op", op, left, self.term())
        return left

    def term(self) -> tuple[Any, ...]:
        left = self.factor()
        while self.peek() is not None and self.peek()[1] in "*/":  # type: ignore[index]
            op = self.take()[1]
            left = ("op", op, left, self.factor())
        return left

    def factor(self) -> tuple[Any, ...]:
        kind, text = self.take()
        if kind == "num":
            return ("num", text)
        if kind == "name":
            return ("col", self.use(text))
        if text == "-":
            return ("neg", self.factor())
        if text == "(":
            inner = self.expr()
            self.take(")")
            return inner
        raise self.fail(f"unexpected {text!r} in {self.text!r}")


def numeric_columns(tree: tuple[Any, ...]) -> list[str]:
    """Columns used inside arithmetic (they must be int or float)."""
    kind = tree[0]
    if kind == "sum":
        return _columns_of(tree[1])
    if kind == "round":
        return numeric_columns(tree[1])
    return []


def _columns_of(expr: tuple[Any, ...]) -> list[str]:
    if expr[0] == "col":
        return [expr[1]]
    if expr[0] == "op":
        return _columns_of(expr[2]) + _columns_of(expr[3])
    if expr[0] == "neg":
        return _columns_of(expr[1])
    return []
