"""A small reader of the protobuf text format, enough for Triton's ``config.pbtxt``.

It reads any well-formed text-format message into nested :class:`TextMessage` values without a
schema: every field maps to the list of its values in file order (a repeated field, or one
written twice, has several), a value is a scalar (``int``, ``float``, ``str`` for quoted strings,
:class:`Enum` for bare identifiers such as ``TYPE_FP32`` or ``true``) or a nested message. What
the fields mean is for the caller (``clockwork.models.triton_config``); this module only parses,
and a syntax error names the line and column.

Accepted syntax: ``name: value``, ``name { ... }`` and ``name: { ... }`` (also ``< ... >``),
lists ``name: [a, b]`` and ``name [ {...}, {...} ]``, fields separated by whitespace, ``,`` or
``;``, ``#`` comments, single or double quoted strings with C escapes, adjacent strings joined.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

from clockwork.core.errors import InvalidInputError

_TOKEN = re.compile(
    r"""
    (?P<space>\s+|\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<number>[-+]?(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)[fF]?)
  | (?P<ident>[-+]?[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<punct>[{}<>\[\]:,;])
    """,
    re.VERBOSE,
)


class PbtxtError(InvalidInputError):
    """The text is not a well-formed text-format message (the message says where)."""


@dataclass(frozen=True, slots=True)
class Enum:
    """A bare identifier value (an enum name, ``true``/``false``, ``inf``)."""

    name: str


Scalar = int | float | str | Enum


@dataclass(frozen=True, slots=True)
class TextMessage:
    """One message: field name -> its values, in file order; ``lines`` -> where each field
    first appears (1-based)."""

    fields: dict[str, list[Scalar | TextMessage]] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)

    def values(self, name: str) -> list[Scalar | TextMessage]:
        return self.fields.get(name, [])


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    text: str
    line: int
    column: int


def parse_pbtxt(text: str) -> TextMessage:
    """The message written in ``text``; PbtxtError names the line and column of a fault."""
    return _Parser(_tokens(text)).message(end=None)


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos, line, line_start = 0, 1, 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise PbtxtError(
                f"line {line}, column {pos - line_start + 1}: unexpected character {text[pos]!r}"
            )
        kind = m.lastgroup
        assert kind is not None
        if kind != "space":
            tokens.append(_Token(kind, m.group(), line, pos - line_start + 1))
        newlines = m.group().count("\n")
        if newlines:
            line += newlines
            line_start = m.start() + m.group().rindex("\n") + 1
        pos = m.end()
    return tokens


class _Parser:
    def __init__(self, tokens: list[_Token]) -> None:
        self._tokens = tokens
        self._pos = 0

    def _peek(self) -> _Token | None:
        return self._tokens[self._pos] if self._pos < len(self._tokens) else None

    def _next(self, what: str) -> _Token:
        token = self._peek()
        if token is None:
            raise PbtxtError(f"unexpected end of text: expected {what}")
        self._pos += 1
        return token

    def _fail(self, token: _Token, what: str) -> PbtxtError:
        return PbtxtError(
            f"line {token.line}, column {token.column}: expected {what}, got {token.text!r}"
        )

    def message(self, end: str | None) -> TextMessage:
        msg = TextMessage()
        while True:
            token = self._peek()
            if token is None:
                if end is not None:
                    raise PbtxtError(f"unexpected end of text: expected {end!r}")
                return msg
            if end is not None and token.kind == "punct" and token.text == end:
                self._pos += 1
                return msg
            if token.kind == "punct" and token.text in ",;":
                self._pos += 1
                continue
            name = self._next("a field name")
            if name.kind != "ident" or name.text[0] in "+-":
                raise self._fail(name, "a field name")
            values = self._field_values()
            msg.fields.setdefault(name.text, []).extend(values)
            msg.lines.setdefault(name.text, name.line)

    def _field_values(self) -> list[Scalar | TextMessage]:
        token = self._next("':' or '{'")
        colon = token.kind == "punct" and token.text == ":"
        if colon:
            token = self._next("a value")
        if token.kind == "punct" and token.text in "{<":
            return [self.message(end="}" if token.text == "{" else ">")]
        if token.kind == "punct" and token.text == "[":
            return self._list()
        if not colon:
            raise self._fail(token, "':' or '{'")
        return [self._scalar(token)]

    def _list(self) -> list[Scalar | TextMessage]:
        items: list[Scalar | TextMessage] = []
        while True:
            token = self._next("a list item or ']'")
            if token.kind == "punct" and token.text == "]":
                return items
            if token.kind == "punct" and token.text == ",":
                continue
            if token.kind == "punct" and token.text in "{<":
                items.append(self.message(end="}" if token.text == "{" else ">"))
            else:
                items.append(self._scalar(token))

    def _scalar(self, token: _Token) -> Scalar:
        if token.kind == "string":
            parts = [_unquote(token)]
            nxt = self._peek()
            while nxt is not None and nxt.kind == "string":  # "a" "b" is "ab"
                parts.append(_unquote(nxt))
                self._pos += 1
                nxt = self._peek()
            return "".join(parts)
        if token.kind == "number":
            text = token.text
            if re.fullmatch(r"[-+]?0[xX][0-9a-fA-F]+", text):
                return int(text, 16)
            if re.fullmatch(r"[-+]?\d+", text):
                return int(text, 10)
            return float(text.rstrip("fF"))
        if token.kind == "ident":
            return Enum(token.text)
        raise self._fail(token, "a value")


def _unquote(token: _Token) -> str:
    try:
        value = ast.literal_eval(token.text)
    except (ValueError, SyntaxError):
        raise PbtxtError(
            f"line {token.line}, column {token.column}: bad string {token.text}"
        ) from None
    assert isinstance(value, str)
    return value
