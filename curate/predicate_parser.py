"""The plain SQL predicates `--where` reads without DuckDB: columns, numbers, strings, `+ - *`, comparisons,
AND/OR/NOT and IS [NOT] NULL.

`parse` gives the tree DuckDB's `json_serialize_sql` gives for the same text (the keys `curate.where`
reads), so importing DuckDB and opening a connection (~0.1 s) is saved for the common predicate.
Anything else — functions, casts, division, keywords other than those above, comments, a
construct whose reading could differ — gives None, and DuckDB parses it (and reports its errors).
`tests/test_select.py` checks the two trees are the same on random predicates.
"""

from __future__ import annotations

from typing import Any

# DuckDB's keywords that are not "unreserved" (`SELECT keyword_name FROM duckdb_keywords() WHERE keyword_category <>
# 'unreserved'`, DuckDB 2.0): unquoted, such a word is not (only) a column name, so a predicate holding one goes to DuckDB
_KEYWORDS = frozenset("""
all analyse analyze and anti any array as asc asof asymmetric at authorization between bigint binary bit boolean both by case cast char
character check coalesce collate collation column columns concurrently constraint create cross dec decimal default deferrable desc describe
distinct do else end except exists extract false fetch float for foreign freeze from full generated glob group grouping grouping_id having
ilike in initially inner inout int integer intersect interval into is isnull join lambda lateral leading left like limit map national
natural nchar none not notnull null nullif numeric offset on only or order out outer overlaps overlay pivot pivot_longer pivot_wider
placing position positional precision primary qualify real references returning right row select semi setof show similar smallint some
struct substring summarize symmetric table tablesample then time timestamp to trailing treat trim true try_cast tuple union unique unpack
unpivot using values varchar variadic verbose when where window with xmlattributes xmlconcat xmlelement xmlexists xmlforest xmlnamespaces
xmlparse xmlpi xmlroot xmlserialize xmltable
""".split())  # fmt: skip
_WORDS = {"and", "or", "not", "is", "null", "isnull", "notnull"}  # the keywords read here
_COMPARE = {"=": "COMPARE_EQUAL", "==": "COMPARE_EQUAL", "<>": "COMPARE_NOTEQUAL", "!=": "COMPARE_NOTEQUAL", "<": "COMPARE_LESSTHAN",
            ">": "COMPARE_GREATERTHAN", "<=": "COMPARE_LESSTHANOREQUALTO", ">=": "COMPARE_GREATERTHANOREQUALTO"}  # fmt: skip
_OPERATOR_CHARS = set("+-*/<>=~!@#%^&|`?")
_SPACES = " \t\n\r"
_DIGITS = "0123456789"  # not str.isdigit(), which takes superscripts and other scripts' digits


class _Decline(Exception):
    """The text is outside the plain subset: DuckDB reads it."""


def parse(predicate: str) -> dict[str, Any] | None:
    """DuckDB's tree of `predicate` when it is a plain predicate (see the module), else None."""
    try:
        tokens = _tokens(predicate)
        parser = _Parser(tokens)
        tree = parser.disjunction()
        if parser.at < len(tokens) or not tokens:
            raise _Decline
        return tree
    except (_Decline, RecursionError):  # very deep nesting: DuckDB has its own limit and message
        return None


def _tokens(text: str) -> list[tuple[str, str]]:
    """(kind, text) pairs; kinds: num, str, id (its name), word (a keyword, lower case), op. PostgreSQL's lexing rules."""
    out: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in _SPACES:
            i += 1
            continue
        start = i
        if c in _DIGITS or (c == "." and i + 1 < n and text[i + 1] in _DIGITS):
            while i < n and text[i] in _DIGITS:
                i += 1
            if i < n and text[i] == ".":
                i += 1
                while i < n and text[i] in _DIGITS:
                    i += 1
            if i < n and text[i] in "eE":
                j = i + 1 + (i + 1 < n and text[i + 1] in "+-")
                if j >= n or text[j] not in _DIGITS:
                    raise _Decline
                i = j
                while i < n and text[i] in _DIGITS:
                    i += 1
            _ends_cleanly(text, i)
            out.append(("num", text[start:i]))
        elif c == "'":
            i, value = _quoted(text, i, "'")
            out.append(("str", value))
        elif c == '"':
            i, value = _quoted(text, i, '"')
            if not value:
                raise _Decline
            _ends_cleanly(text, i)
            out.append(("id", value))
        elif c.isascii() and (c.isalpha() or c == "_"):
            while i < n and text[i].isascii() and (text[i].isalnum() or text[i] == "_"):
                i += 1
            _ends_cleanly(text, i)
            word = text[start:i]
            if word.lower() in _WORDS:
                out.append(("word", word.lower()))
            elif word.lower() in _KEYWORDS:
                raise _Decline
            else:
                out.append(("id", word))
        elif c in "()":
            i += 1
            out.append(("op", c))
        elif c in _OPERATOR_CHARS:
            while i < n and text[i] in _OPERATOR_CHARS:
                i += 1
            run = text[start:i]
            if "--" in run or "/*" in run:  # a comment
                raise _Decline
            # a multi-character operator cannot end in + or - unless it holds one of ~!@#%^&|`? (PostgreSQL's rule)
            while len(run) > 1 and run[-1] in "+-" and not set(run) & set("~!@#%^&|`?"):
                run = run[:-1]
            if run not in _COMPARE and run not in ("+", "-", "*"):
                raise _Decline
            i = start + len(run)
            out.append(("op", run))
        else:
            raise _Decline
    return out


def _ends_cleanly(text: str, i: int) -> None:
    """A number or name must not run on into letters, digits, `$`, `.` or quotes (`1a`, `1_000`, `a.b`, `a$`, `e'x'`)."""
    if i < len(text) and (text[i].isalnum() or text[i] in "_$.'\""):
        raise _Decline


def _quoted(text: str, i: int, quote: str) -> tuple[int, str]:
    """The text between quotes starting at `i` (a doubled quote is one), and the index after the closing quote."""
    parts, j = [], i + 1
    while True:
        k = text.find(quote, j)
        if k < 0:
            raise _Decline
        parts.append(text[j:k])
        if k + 1 < len(text) and text[k + 1] == quote:
            parts.append(quote)
            j = k + 2
            continue
        return k + 1, "".join(parts)


def _function(name: str, *args: dict[str, Any]) -> dict[str, Any]:
    return {"class": "FUNCTION", "type": "FUNCTION", "function_name": name, "is_operator": True, "distinct": False,
            "arguments": [{"expression": a} for a in args]}  # fmt: skip


class _Parser:
    """Recursive descent with PostgreSQL's precedence: OR < AND < NOT < IS < comparison (not chained) < + - < * < unary minus."""

    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens, self.at = tokens, 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self, kind: str, text: str | None = None) -> bool:
        token = self.peek()
        if token is not None and token[0] == kind and (text is None or token[1] == text):
            self.at += 1
            return True
        return False

    def conjunction(self, word: str, part: Any) -> dict[str, Any]:
        """`part (word part)*`, flattened as DuckDB does (nested conjunctions of one kind become one)."""
        kind = f"CONJUNCTION_{word.upper()}"
        children = [part()]
        while self.take("word", word):
            children.append(part())
        if len(children) == 1:
            return children[0]
        flat: list[dict[str, Any]] = []
        for c in children:
            flat += c["children"] if c.get("class") == "CONJUNCTION" and c.get("type") == kind else [c]
        return {"class": "CONJUNCTION", "type": kind, "children": flat}

    def disjunction(self) -> dict[str, Any]:
        return self.conjunction("or", lambda: self.conjunction("and", self.negation))

    def negation(self) -> dict[str, Any]:
        if self.take("word", "not"):
            return {"class": "OPERATOR", "type": "OPERATOR_NOT", "children": [self.negation()]}
        return self.null_test()

    def null_test(self) -> dict[str, Any]:
        node = self.comparison()
        while True:
            if self.take("word", "isnull"):
                kind = "OPERATOR_IS_NULL"
            elif self.take("word", "notnull"):
                kind = "OPERATOR_IS_NOT_NULL"
            elif self.take("word", "is"):
                kind = "OPERATOR_IS_NOT_NULL" if self.take("word", "not") else "OPERATOR_IS_NULL"
                if not self.take("word", "null"):  # IS TRUE, IS DISTINCT FROM, ...
                    raise _Decline
            else:
                return node
            node = {"class": "OPERATOR", "type": kind, "children": [node]}

    def comparison(self) -> dict[str, Any]:
        left = self.sum()
        token = self.peek()
        if token is None or token[0] != "op" or token[1] not in _COMPARE:
            return left
        self.at += 1
        right = self.sum()
        after = self.peek()
        if after is not None and after[0] == "op" and after[1] in _COMPARE:  # chained: DuckDB refuses it
            raise _Decline
        return {"class": "COMPARISON", "type": _COMPARE[token[1]], "left": left, "right": right}

    def sum(self) -> dict[str, Any]:
        node = self.product()
        while (token := self.peek()) is not None and token[0] == "op" and token[1] in ("+", "-"):
            self.at += 1
            node = _function(token[1], node, self.product())
        return node

    def product(self) -> dict[str, Any]:
        node = self.unary()
        while self.take("op", "*"):
            node = _function("*", node, self.unary())
        return node

    def unary(self) -> dict[str, Any]:
        if self.take("op", "-"):
            token = self.peek()
            if token is None or token in (("op", "-"), ("op", "+"), ("op", "(")):  # DuckDB folds these its own way
                raise _Decline
            if token[0] == "num":  # a minus before a number is part of the constant
                self.at += 1
                return _constant("-" + token[1])
            return _function("-", self.unary())
        return self.primary()

    def primary(self) -> dict[str, Any]:
        token = self.peek()
        if token is None:
            raise _Decline
        self.at += 1
        kind, text = token
        if kind == "num":
            return _constant(text)
        if kind == "str":
            return {"class": "CONSTANT", "type": "VALUE_CONSTANT", "literal": {"kind": "STRING", "text": text}}
        if kind == "id":
            if self.peek() == ("op", "("):  # a function call
                raise _Decline
            return {"class": "COLUMN_REF", "type": "COLUMN_REF", "column_names": [text]}
        if token == ("op", "("):
            node = self.disjunction()
            if not self.take("op", ")"):
                raise _Decline
            return node
        raise _Decline


def _constant(text: str) -> dict[str, Any]:
    kind = "INTEGER" if all(c in _DIGITS for c in text.lstrip("-")) else "NUMERIC"
    return {"class": "CONSTANT", "type": "VALUE_CONSTANT", "literal": {"kind": kind, "text": text}}
