"""SOQL for the Salesforce sandbox: a tokenizer, a recursive-descent parser and a compiler to closures.

The subset is what a sync tool needs: ``SELECT`` of fields, parent fields through relationships
(``Owner.Email``, ``Account.Owner.Name``) and ``COUNT()``; ``WHERE`` with ``AND``/``OR``/``NOT`` and
parentheses, ``= != <> < <= > >= IN NOT IN LIKE``, ``null``, ``TRUE``/``FALSE``, date and datetime
literals and string escapes; ``ORDER BY`` several fields ``ASC``/``DESC`` ``NULLS FIRST``/``LAST``;
``LIMIT``; ``OFFSET``. Names are case-insensitive, as in Salesforce, and checked against the org's schema,
so a misspelt field is the same ``INVALID_FIELD`` error a real org returns.

A query is parsed once (``parse``), bound to the schema once (``compile_query``) into plain closures, then
run over records: no ``eval``, and no per-record interpretation of the syntax tree.

Records are the sandbox store's dicts: canonical field names, datetimes as ``2024-01-01T00:00:00.000+0000``
(fixed width, UTC), so datetime literals are normalised to the same text and compared as strings.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from syncd.core.systems import FieldSpec, ObjectSpec
from syncd.sandbox.ids import sf_checksum

Record = dict[str, Any]
# id -> (sObject type, record), or None when nothing has that id
Lookup = Callable[[str], "tuple[str, Record] | None"]

SF_DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
MAX_OFFSET = 2000
MAX_RELATIONSHIP_DEPTH = 5

_TEXT_TYPES = frozenset({"string", "email", "url", "phone", "picklist", "textarea"})
_ID_TYPES = frozenset({"id", "reference"})
_NUMBER_TYPES = frozenset({"int", "double", "currency"})


# --------------------------------------------------------------------------------------------- datetimes


def format_sf_datetime(value: datetime) -> str:
    """A datetime as Salesforce writes it: ``2024-01-01T00:00:00.000+0000`` in UTC."""
    value = value.astimezone(UTC)
    return f"{value.strftime(SF_DATETIME_FORMAT)}.{value.microsecond // 1000:03d}+0000"


_DATETIME_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?\s*(Z|[+-]\d{2}:?\d{2})?$",
    re.IGNORECASE,
)


def parse_sf_datetime(text: str) -> datetime:
    """Parse the datetime forms clients send (``Z``, ``+hh:mm``, ``+hhmm``, fractions); naive means UTC.

    Raises ValueError for anything else.
    """
    m = _DATETIME_RE.match(text.strip())
    if not m:
        raise ValueError(f"not a datetime: {text!r}")
    year, month, day, hour, minute, second, frac, tz = m.groups()
    micro = int((frac or "0").ljust(6, "0")[:6])
    value = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tzinfo=UTC)
    if tz and tz.upper() != "Z":
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        value = value - sign * offset
    return value


def normalize_sf_datetime(text: str) -> str:
    """Any accepted datetime text in Salesforce's stored form."""
    return format_sf_datetime(parse_sf_datetime(text))


# --------------------------------------------------------------------------------------------- ids

_ID_CHARS = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_ID_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def canonical_sf_id(value: object) -> str | None:
    """The 18-character form of a Salesforce id, or None when it is malformed.

    An 18-character id is case-insensitive: its suffix says which of the first 15 characters are upper case,
    so ``00q8d0000000001aaa`` and ``00Q8d0000000001AAA`` name the same record, as in Salesforce.
    """
    if not isinstance(value, str) or not set(value) <= _ID_CHARS:
        return None
    if len(value) == 15:
        return value + sf_checksum(value)
    if len(value) != 18:
        return None
    suffix = value[15:].upper()
    chars = list(value[:15])
    for block, letter in enumerate(suffix):
        bits = _ID_SUFFIX.find(letter)
        if bits < 0:
            return None
        for i in range(5):
            ch = chars[block * 5 + i]
            upper = bool(bits >> i & 1)
            if ch.isalpha():
                chars[block * 5 + i] = ch.upper() if upper else ch.lower()
            elif upper:
                return None
    id15 = "".join(chars)
    return id15 + suffix if sf_checksum(id15) == suffix else None


# --------------------------------------------------------------------------------------------- errors


class SoqlError(Exception):
    """A query Salesforce would reject: ``code`` is its errorCode, ``message`` its message text."""

    def __init__(self, code: str, detail: str, text: str = "", pos: int | None = None) -> None:
        self.code = code
        self.detail = detail
        self.text = text
        self.pos = pos
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """Salesforce's layout: the query line, a caret under the problem, its row and column, the detail."""
        if self.pos is None or not self.text:
            return self.detail
        before = self.text[: self.pos]
        row = before.count("\n") + 1
        col = self.pos - (before.rfind("\n") + 1)
        line = self.text.splitlines()[row - 1] if self.text.splitlines() else ""
        return f"\n{line}\n{' ' * col}^\nERROR at Row:{row}:Column:{col + 1}\n{self.detail}"


# --------------------------------------------------------------------------------------------- tokens


@dataclass(frozen=True)
class Token:
    kind: str  # IDENT STRING NUMBER DATE DATETIME OP LPAREN RPAREN COMMA DOT EOF
    value: Any
    pos: int
    text: str


_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:\d{2})(?![\w:.]))
  | (?P<date>\d{4}-\d{2}-\d{2}(?![\w:]))
  | (?P<number>[+-]?(?:\d+(?:\.\d+)?|\.\d+)(?![\w.]))
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<string>')
  | (?P<op>!=|<>|<=|>=|=|<|>)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
  | (?P<dot>\.)
    """,
    re.VERBOSE,
)

_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", '"': '"', "'": "'", "\\": "\\"}
# Kept escaped in string values: only LIKE gives them meaning; elsewhere they read as the plain character.
_LIKE_ESCAPES = {"%", "_"}


def _read_string(text: str, start: int) -> tuple[str, int]:
    """The value of the quoted string opening at ``start`` and the index after its closing quote."""
    out: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "'":
            return "".join(out), i + 1
        if ch == "\\":
            if i + 1 >= len(text):
                break
            nxt = text[i + 1]
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
            elif nxt in _LIKE_ESCAPES:
                out.append("\\" + nxt)
            elif nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", text[i + 2 : i + 6]):
                out.append(chr(int(text[i + 2 : i + 6], 16)))
                i += 4
            else:
                raise SoqlError(
                    "MALFORMED_QUERY",
                    f"Invalid string literal '{text[start:]}'. Illegal character "
                    f"sequence '\\{nxt}' in string literal.",
                    text,
                    i,
                )
            i += 2
            continue
        out.append(ch)
        i += 1
    raise SoqlError("MALFORMED_QUERY", "unterminated string literal", text, start)


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{text[pos]}'", text, pos)
        kind = m.lastgroup or ""
        if kind == "ws":
            pos = m.end()
            continue
        if kind == "string":
            value, end = _read_string(text, pos)
            tokens.append(Token("STRING", value, pos, text[pos:end]))
            pos = end
            continue
        raw = m.group()
        if kind == "number":
            value_n: int | float = float(raw) if "." in raw else int(raw)
            tokens.append(Token("NUMBER", value_n, pos, raw))
        else:
            tokens.append(Token(kind.upper(), raw, pos, raw))
        pos = m.end()
    tokens.append(Token("EOF", None, len(text), "<EOF>"))
    return tokens


# --------------------------------------------------------------------------------------------- syntax tree


@dataclass(frozen=True)
class Path:
    """A field as written: ``("Owner", "Email")``."""

    names: tuple[str, ...]
    pos: int

    @property
    def text(self) -> str:
        return ".".join(self.names)


@dataclass(frozen=True)
class Literal:
    kind: str  # string number boolean null date datetime
    value: Any
    pos: int
    text: str


@dataclass(frozen=True)
class Compare:
    path: Path
    op: str  # = != < <= > >=   (<> is read as !=)
    literal: Literal


@dataclass(frozen=True)
class InList:
    path: Path
    literals: tuple[Literal, ...]
    negated: bool


@dataclass(frozen=True)
class Like:
    path: Path
    literal: Literal


@dataclass(frozen=True)
class BoolOp:
    op: str  # AND OR
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    item: Condition


Condition = Compare | InList | Like | BoolOp | Not


@dataclass(frozen=True)
class OrderItem:
    path: Path
    descending: bool = False
    nulls_last: bool = False


@dataclass(frozen=True)
class CountExpr:
    """``COUNT()`` (path None: only totalSize) or ``COUNT(field) [alias]`` (one AggregateResult row)."""

    path: Path | None
    alias: str | None
    pos: int


@dataclass(frozen=True)
class Query:
    text: str
    sobject: str
    sobject_pos: int
    fields: tuple[Path, ...] = ()
    count: CountExpr | None = None
    where: Condition | None = None
    order_by: tuple[OrderItem, ...] = ()
    limit: int | None = None
    offset: int | None = None


_KEYWORDS = frozenset(
    {
        "SELECT",
        "FROM",
        "WHERE",
        "AND",
        "OR",
        "NOT",
        "IN",
        "LIKE",
        "NULL",
        "TRUE",
        "FALSE",
        "ORDER",
        "BY",
        "ASC",
        "DESC",
        "NULLS",
        "FIRST",
        "LAST",
        "LIMIT",
        "OFFSET",
        "INCLUDES",
        "EXCLUDES",
        "GROUP",
        "HAVING",
        "WITH",
        "FOR",
        "USING",
        "TYPEOF",
    }
)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    # -- helpers

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def advance(self) -> Token:
        tok = self.tokens[self.i]
        if tok.kind != "EOF":
            self.i += 1
        return tok

    def is_kw(self, *words: str) -> bool:
        return self.tok.kind == "IDENT" and self.tok.value.upper() in words

    def unexpected(self, tok: Token | None = None) -> SoqlError:
        tok = tok or self.tok
        return SoqlError("MALFORMED_QUERY", f"unexpected token: '{tok.text}'", self.text, tok.pos)

    def expect_kw(self, word: str) -> Token:
        if not self.is_kw(word):
            raise self.unexpected()
        return self.advance()

    def expect(self, kind: str) -> Token:
        if self.tok.kind != kind:
            raise self.unexpected()
        return self.advance()

    def name(self) -> Token:
        tok = self.tok
        if tok.kind != "IDENT" or tok.value.upper() in _KEYWORDS:
            raise self.unexpected()
        return self.advance()

    def path(self) -> Path:
        first = self.name()
        names = [first.value]
        while self.tok.kind == "DOT":
            self.advance()
            if self.tok.kind != "IDENT":
                raise self.unexpected()
            names.append(self.advance().value)
        return Path(tuple(names), first.pos)

    def integer(self) -> int:
        tok = self.tok
        if tok.kind != "NUMBER" or not isinstance(tok.value, int) or tok.value < 0:
            raise self.unexpected()
        self.advance()
        return int(tok.value)

    # -- grammar

    def query(self) -> Query:
        self.expect_kw("SELECT")
        fields: list[Path] = []
        count: CountExpr | None = None
        while True:
            if self.is_kw("COUNT") and self.tokens[self.i + 1].kind == "LPAREN":
                if count is not None or fields:
                    raise self.unexpected()
                start = self.advance()
                self.expect("LPAREN")
                path = None if self.tok.kind == "RPAREN" else self.path()
                self.expect("RPAREN")
                alias = None
                if path is not None and self.tok.kind == "IDENT" and self.tok.value.upper() not in _KEYWORDS:
                    alias = self.advance().value
                count = CountExpr(path, alias, start.pos)
            else:
                if count is not None:
                    raise SoqlError(
                        "MALFORMED_QUERY",
                        f"Field must be grouped or aggregated: {self.tok.text}",
                        self.text,
                        self.tok.pos,
                    )
                fields.append(self.path())
            if self.tok.kind != "COMMA":
                break
            self.advance()
        self.expect_kw("FROM")
        # "Group" is a keyword and also the sObject that holds queues: right after FROM it names the object.
        obj = (
            self.advance() if self.tok.kind == "IDENT" and self.tok.value.upper() == "GROUP" else self.name()
        )
        query = Query(self.text, obj.value, obj.pos, tuple(fields), count)
        where: Condition | None = None
        order: list[OrderItem] = []
        limit = offset = None
        if self.is_kw("WHERE"):
            self.advance()
            where = self.condition()
        if self.is_kw("ORDER"):
            self.advance()
            self.expect_kw("BY")
            order.append(self.order_item())
            while self.tok.kind == "COMMA":
                self.advance()
                order.append(self.order_item())
        if self.is_kw("LIMIT"):
            self.advance()
            limit = self.integer()
        if self.is_kw("OFFSET"):
            offset_tok = self.advance()
            offset = self.integer()
            if offset > MAX_OFFSET:
                raise SoqlError(
                    "NUMBER_OUTSIDE_VALID_RANGE",
                    f"Maximum SOQL offset allowed is {MAX_OFFSET}",
                    self.text,
                    offset_tok.pos,
                )
        if self.tok.kind != "EOF":
            raise self.unexpected()
        return Query(
            query.text,
            query.sobject,
            query.sobject_pos,
            query.fields,
            query.count,
            where,
            tuple(order),
            limit,
            offset,
        )

    def order_item(self) -> OrderItem:
        path = self.path()
        descending = False
        if self.is_kw("ASC", "DESC"):
            descending = self.advance().value.upper() == "DESC"
        nulls_last = False
        if self.is_kw("NULLS"):
            self.advance()
            if not self.is_kw("FIRST", "LAST"):
                raise self.unexpected()
            nulls_last = self.advance().value.upper() == "LAST"
        return OrderItem(path, descending, nulls_last)

    def condition(self) -> Condition:
        """Conditions joined by one kind of operator: SOQL refuses ``a AND b OR c`` without parentheses."""
        items = [self.unary()]
        op: str | None = None
        while self.is_kw("AND", "OR"):
            tok = self.advance()
            word = tok.value.upper()
            if op is not None and word != op:
                raise self.unexpected(tok)
            op = word
            items.append(self.unary())
        return items[0] if op is None else BoolOp(op, tuple(items))

    def unary(self) -> Condition:
        if self.is_kw("NOT"):
            self.advance()
            return Not(self.unary())
        if self.tok.kind == "LPAREN":
            self.advance()
            inner = self.condition()
            self.expect("RPAREN")
            return inner
        return self.simple()

    def simple(self) -> Condition:
        path = self.path()
        tok = self.tok
        if tok.kind == "OP":
            self.advance()
            op = "!=" if tok.value == "<>" else tok.value
            return Compare(path, op, self.literal())
        if self.is_kw("LIKE"):
            self.advance()
            lit = self.literal()
            return Like(path, lit)
        negated = False
        if self.is_kw("NOT"):
            self.advance()
            negated = True
            if not self.is_kw("IN"):
                raise self.unexpected()
        if self.is_kw("IN"):
            self.advance()
            self.expect("LPAREN")
            if self.is_kw("SELECT"):
                raise SoqlError(
                    "MALFORMED_QUERY",
                    "semi-join sub-selects are not supported by the sandbox",
                    self.text,
                    self.tok.pos,
                )
            values = [self.literal()]
            while self.tok.kind == "COMMA":
                self.advance()
                values.append(self.literal())
            self.expect("RPAREN")
            return InList(path, tuple(values), negated)
        raise self.unexpected()

    def literal(self) -> Literal:
        tok = self.tok
        if tok.kind == "STRING":
            self.advance()
            return Literal("string", tok.value, tok.pos, tok.text)
        if tok.kind == "NUMBER":
            self.advance()
            return Literal("number", tok.value, tok.pos, tok.text)
        if tok.kind == "DATE":
            self.advance()
            try:
                date.fromisoformat(tok.value)
            except ValueError:
                raise SoqlError("MALFORMED_QUERY", f"invalid date: {tok.value}", self.text, tok.pos) from None
            return Literal("date", tok.value, tok.pos, tok.text)
        if tok.kind == "DATETIME":
            self.advance()
            try:
                value = normalize_sf_datetime(tok.value)
            except ValueError:
                raise SoqlError(
                    "MALFORMED_QUERY", f"invalid datetime: {tok.value}", self.text, tok.pos
                ) from None
            return Literal("datetime", value, tok.pos, tok.text)
        if tok.kind == "IDENT":
            word = tok.value.upper()
            if word in ("TRUE", "FALSE"):
                self.advance()
                return Literal("boolean", word == "TRUE", tok.pos, tok.text)
            if word == "NULL":
                self.advance()
                return Literal("null", None, tok.pos, tok.text)
        raise self.unexpected()


def parse(text: str) -> Query:
    """Parse a SOQL statement; raises SoqlError (MALFORMED_QUERY) on a syntax error."""
    if not text or not text.strip():
        raise SoqlError("MALFORMED_QUERY", "empty query")
    return _Parser(text).query()


# --------------------------------------------------------------------------------------------- binding

# Polymorphic references (Lead.OwnerId -> User or Queue) point at Salesforce's "Name" object: the fields
# every possible parent shares, with Type telling which it is.
NAME_OBJECT = ObjectSpec(
    "Name",
    fields=(
        FieldSpec("Id", "id"),
        FieldSpec("Name"),
        FieldSpec("FirstName"),
        FieldSpec("LastName"),
        FieldSpec("Email", "email"),
        FieldSpec("IsActive", "boolean"),
        FieldSpec("Title"),
        FieldSpec("Type"),
        FieldSpec("Username"),
        FieldSpec("Alias"),
        FieldSpec("Phone", "phone"),
    ),
)


def name_view(type_: str, record: Record) -> Record:
    """A parent record seen through the polymorphic Name object."""
    view = {f.name: record.get(f.name) for f in NAME_OBJECT.fields}
    view["Type"] = record.get("Type") if type_ == "Group" else type_
    if type_ != "User":
        view["IsActive"] = None
    return view


def relationship_name(spec: FieldSpec) -> str | None:
    """``OwnerId`` -> ``Owner``; ``Partner__c`` -> ``Partner__r``; None for fields that are not references."""
    if spec.type != "reference" or not spec.references:
        return None
    if spec.name.endswith("__c"):
        return spec.name[:-3] + "__r"
    if spec.name.endswith("Id"):
        return spec.name[:-2]
    return None


def _relationships(spec: ObjectSpec) -> dict[str, FieldSpec]:
    out: dict[str, FieldSpec] = {}
    for f in spec.fields:
        rel = relationship_name(f)
        if rel:
            out[rel.lower()] = f
    return out


@dataclass
class _Step:
    """One hop through a relationship: the reference field to follow and the object it lands on."""

    rel_name: str
    ref_key: str
    target: ObjectSpec  # NAME_OBJECT for polymorphic references


@dataclass
class _Resolved:
    steps: list[_Step]
    field: FieldSpec
    canonical: str  # "Owner.Email"


def _no_such_column(name: str, obj: str, text: str, pos: int) -> SoqlError:
    return SoqlError(
        "INVALID_FIELD",
        f"No such column '{name}' on entity '{obj}'. If you are attempting to use a custom field, be sure to "
        "append the '__c' after the custom field name. Please reference your WSDL or the describe call for the "
        "appropriate names.",
        text,
        pos,
    )


def _bad_relationship(name: str, text: str, pos: int) -> SoqlError:
    return SoqlError(
        "INVALID_FIELD",
        f"Didn't understand relationship '{name}' in field path. If you are attempting to use a custom "
        "relationship, be sure to append the '__r' after the custom relationship name. Please reference your WSDL "
        "or the describe call for the appropriate names.",
        text,
        pos,
    )


def _resolve(path: Path, root: ObjectSpec, objects: dict[str, ObjectSpec], text: str) -> _Resolved:
    spec = root
    steps: list[_Step] = []
    canonical: list[str] = []
    names = path.names
    # Salesforce accepts the object's own name as a prefix: SELECT Lead.Email FROM Lead
    if (
        len(names) > 1
        and names[0].lower() == root.name.lower()
        and root.field(names[0]) is None
        and names[0].lower() not in _relationships(root)
    ):
        names = names[1:]
    if len(names) - 1 > MAX_RELATIONSHIP_DEPTH:
        raise SoqlError(
            "MALFORMED_QUERY",
            "SOQL statements cannot query more than 5 levels of relationships",
            text,
            path.pos,
        )
    for rel in names[:-1]:
        ref = _relationships(spec).get(rel.lower())
        if ref is None:
            raise _bad_relationship(rel, text, path.pos)
        rel_name = relationship_name(ref) or rel
        if len(ref.references) > 1:
            target = NAME_OBJECT
        else:
            target_spec = objects.get(ref.references[0])
            if target_spec is None:
                raise _bad_relationship(rel, text, path.pos)
            target = target_spec
        steps.append(_Step(rel_name, ref.name, target))
        canonical.append(rel_name)
        spec = target
    leaf = spec.field(names[-1])
    if leaf is None:
        raise _no_such_column(names[-1], spec.name, text, path.pos)
    canonical.append(leaf.name)
    return _Resolved(steps, leaf, ".".join(canonical))


def _deref(step: _Step, lookup: Lookup) -> Callable[[Record], Record | None]:
    key = step.ref_key
    polymorphic = step.target is NAME_OBJECT

    def follow(record: Record) -> Record | None:
        ref = record.get(key)
        if not ref:
            return None
        found = lookup(ref)
        if found is None:
            return None
        return name_view(*found) if polymorphic else found[1]

    return follow


def _getter(resolved: _Resolved, lookup: Lookup) -> Callable[[Record], Any]:
    key = resolved.field.name
    if not resolved.steps:
        return lambda r: r.get(key)
    hops = [_deref(s, lookup) for s in resolved.steps]

    def get(record: Record) -> Any:
        cur: Record | None = record
        for hop in hops:
            cur = hop(cur) if cur is not None else None
        return None if cur is None else cur.get(key)

    return get


# --------------------------------------------------------------------------------------------- conditions


def _type_class(spec: FieldSpec) -> str:
    if spec.type in _TEXT_TYPES:
        return "text"
    if spec.type in _ID_TYPES:
        return "id"
    if spec.type in _NUMBER_TYPES:
        return "number"
    return spec.type  # boolean date datetime


_EXPECTED_LITERAL = {
    "text": "string",
    "id": "string",
    "number": "number",
    "boolean": "boolean",
    "date": "date",
    "datetime": "datetime",
}
_TYPE_WORDS = {
    "text": "string",
    "id": "string",
    "number": "double",
    "boolean": "boolean",
    "date": "date",
    "datetime": "dateTime",
}


def _literal_value(lit: Literal, spec: FieldSpec, canonical: str, text: str) -> Any:
    """The literal as a value comparable with this field's normalised values; raises on a type mismatch."""
    if lit.kind == "null":
        return None
    tclass = _type_class(spec)
    if _EXPECTED_LITERAL[tclass] != lit.kind:
        quoted = "be enclosed in quotes" if tclass in ("text", "id") else "not be enclosed in quotes"
        raise SoqlError(
            "INVALID_FIELD",
            f"value of filter criterion for field '{canonical}' must be of type "
            f"{_TYPE_WORDS[tclass]} and should {quoted}",
            text,
            lit.pos,
        )
    value = lit.value
    if tclass == "id":
        id_value = canonical_sf_id(value)
        if id_value is None:
            raise SoqlError("INVALID_QUERY_FILTER_OPERATOR", f"invalid ID field: {value}", text, lit.pos)
        return id_value
    if tclass == "text":
        return _unescape_like(value).casefold()
    if tclass == "number":
        return float(value)
    return value


def _unescape_like(value: str) -> str:
    return value.replace("\\%", "%").replace("\\_", "_")


def _normalizer(tclass: str) -> Callable[[Any], Any]:
    if tclass == "text":
        return lambda v: str(v).casefold()
    if tclass == "number":
        return float
    return lambda v: v


def _like_regex(pattern: str) -> re.Pattern[str]:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern) and pattern[i + 1] in _LIKE_ESCAPES:
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


Predicate = Callable[[Record], bool]


def _compile_condition(
    cond: Condition, bind: Callable[[Path], _Resolved], lookup: Lookup, text: str
) -> Predicate:
    if isinstance(cond, BoolOp):
        parts = [_compile_condition(c, bind, lookup, text) for c in cond.items]
        if cond.op == "AND":
            return lambda r: all(p(r) for p in parts)
        return lambda r: any(p(r) for p in parts)
    if isinstance(cond, Not):
        inner = _compile_condition(cond.item, bind, lookup, text)
        return lambda r: not inner(r)
    resolved = bind(cond.path)
    get = _getter(resolved, lookup)
    tclass = _type_class(resolved.field)
    norm = _normalizer(tclass)
    if isinstance(cond, Like):
        if tclass not in ("text", "id") or cond.literal.kind != "string":
            raise SoqlError(
                "INVALID_FIELD",
                f"invalid operator on field '{resolved.canonical}': LIKE",
                text,
                cond.literal.pos,
            )
        rx = _like_regex(cond.literal.value)
        return lambda r: (v := get(r)) is not None and rx.fullmatch(str(v)) is not None
    if isinstance(cond, InList):
        values = {_literal_value(lit, resolved.field, resolved.canonical, text) for lit in cond.literals}
        has_null = None in values
        values.discard(None)
        if cond.negated:
            return lambda r: (
                ((v := get(r)) is None and not has_null) or (v is not None and norm(v) not in values)
            )
        return lambda r: ((v := get(r)) is None and has_null) or (v is not None and norm(v) in values)
    value = _literal_value(cond.literal, resolved.field, resolved.canonical, text)
    op = cond.op
    if value is None:
        if op == "=":
            return lambda r: get(r) is None
        if op == "!=":
            return lambda r: get(r) is not None
        return lambda r: False
    if op == "=":
        return lambda r: (v := get(r)) is not None and norm(v) == value
    if op == "!=":
        return lambda r: (v := get(r)) is None or norm(v) != value
    if tclass == "boolean":
        raise SoqlError(
            "INVALID_FIELD",
            f"invalid operator on boolean field '{resolved.canonical}': {op}",
            text,
            cond.literal.pos,
        )
    compare: Callable[[Any, Any], bool] = {
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
    }[op]
    return lambda r: (v := get(r)) is not None and compare(norm(v), value)


# --------------------------------------------------------------------------------------------- projection


@dataclass
class _Node:
    """The shape of one record in a response: its own fields in SELECT order and nested parents."""

    items: list[tuple[str, str, _Node | None, _Step | None]] = field(default_factory=list)
    # (output name, record key, child node, step) -- child and step set for a parent relationship


def _add_to_tree(root: _Node, resolved: _Resolved) -> None:
    node = root
    for step in resolved.steps:
        existing = next((it for it in node.items if it[2] is not None and it[0] == step.rel_name), None)
        if existing is None:
            child = _Node()
            node.items.append((step.rel_name, step.ref_key, child, step))
            node = child
        else:
            assert existing[2] is not None
            node = existing[2]
    node.items.append((resolved.field.name, resolved.field.name, None, None))


def _record_url(base: str, type_: str, id_: Any) -> str:
    return f"{base}/sobjects/{type_}/{id_}"


@dataclass
class CompiledQuery:
    """A query bound to an org's schema: run it over records, then project each one for the response."""

    query: Query
    sobject: str
    columns: list[str]  # canonical field paths in SELECT order (Bulk API CSV headers)
    predicate: Predicate | None
    order: list[tuple[Callable[[Record], Any], bool, bool]]  # (sort key, descending, nulls last)
    lookup: Lookup
    base_path: str
    tree: _Node
    getters: list[Callable[[Record], Any]]
    count_only: bool = False
    aggregate: CountExpr | None = None
    aggregate_getter: Callable[[Record], Any] | None = None

    def run(self, records: Iterable[Record]) -> list[Record]:
        """Filter, sort, then apply OFFSET and LIMIT."""
        pred = self.predicate
        rows = [r for r in records if pred(r)] if pred is not None else list(records)
        for key, descending, nulls_last in reversed(self.order):
            present = [r for r in rows if key(r) is not None]
            missing = [r for r in rows if key(r) is None]
            present.sort(key=key, reverse=descending)
            rows = present + missing if nulls_last else missing + present
        start = self.query.offset or 0
        end = None if self.query.limit is None else start + self.query.limit
        return rows[start:end]

    def project(self, record: Record) -> Record:
        """The record as Salesforce returns it: ``attributes`` first, then the selected fields."""
        return self._project(self.tree, self.sobject, self.sobject, record)

    def _project(self, node: _Node, attr_type: str, url_type: str, record: Record) -> Record:
        out: Record = {
            "attributes": {"type": attr_type, "url": _record_url(self.base_path, url_type, record.get("Id"))}
        }
        for name, key, child, step in node.items:
            if child is None:
                out[name] = record.get(key)
                continue
            assert step is not None
            ref = record.get(key)
            found = self.lookup(ref) if ref else None
            if found is None:
                out[name] = None
            elif step.target is NAME_OBJECT:
                out[name] = self._project(child, "Name", found[0], name_view(*found))
            else:
                out[name] = self._project(child, found[0], found[0], found[1])
        return out

    def row(self, record: Record) -> list[Any]:
        """The selected values in column order (for CSV)."""
        return [g(record) for g in self.getters]


def _sort_key(get: Callable[[Record], Any], tclass: str) -> Callable[[Record], Any]:
    if tclass == "text":
        return lambda r: None if (v := get(r)) is None else str(v).casefold()
    if tclass == "number":
        return lambda r: None if (v := get(r)) is None else float(v)
    return get


def compile_query(
    query: Query, objects: dict[str, ObjectSpec], lookup: Lookup, base_path: str
) -> CompiledQuery:
    """Bind a parsed query to the org's objects; raises SoqlError (INVALID_TYPE, INVALID_FIELD, ...).

    ``lookup`` finds any record by id (for parent fields); ``base_path`` is ``/services/data/v59.0``.
    """
    text = query.text
    by_lower = {name.lower(): spec for name, spec in objects.items()}
    root = by_lower.get(query.sobject.lower())
    if root is None:
        raise SoqlError(
            "INVALID_TYPE",
            f"sObject type '{query.sobject}' is not supported. If you are attempting to use a custom object, be "
            "sure to append the '__c' after the entity name. Please reference your WSDL or the describe call for "
            "the appropriate names.",
            text,
            query.sobject_pos,
        )

    def bind(path: Path) -> _Resolved:
        return _resolve(path, root, objects, text)

    tree = _Node()
    columns: list[str] = []
    getters: list[Callable[[Record], Any]] = []
    seen: set[str] = set()
    for path in query.fields:
        resolved = bind(path)
        if resolved.canonical.lower() in seen:
            raise SoqlError(
                "MALFORMED_QUERY", f"duplicate field selected: {resolved.canonical}", text, path.pos
            )
        seen.add(resolved.canonical.lower())
        _add_to_tree(tree, resolved)
        columns.append(resolved.canonical)
        getters.append(_getter(resolved, lookup))
    aggregate_getter = None
    if query.count is not None and query.count.path is not None:
        aggregate_getter = _getter(bind(query.count.path), lookup)
    if query.count is not None and query.order_by:
        raise SoqlError(
            "MALFORMED_QUERY",
            f"Ordered field must be grouped or aggregated: {query.order_by[0].path.text}",
            text,
            query.order_by[0].path.pos,
        )
    predicate = _compile_condition(query.where, bind, lookup, text) if query.where is not None else None
    order = []
    for item in query.order_by:
        resolved = bind(item.path)
        order.append(
            (
                _sort_key(_getter(resolved, lookup), _type_class(resolved.field)),
                item.descending,
                item.nulls_last,
            )
        )
    return CompiledQuery(
        query,
        root.name,
        columns,
        predicate,
        order,
        lookup,
        base_path,
        tree,
        getters,
        count_only=query.count is not None and query.count.path is None,
        aggregate=query.count if aggregate_getter is not None else None,
        aggregate_getter=aggregate_getter,
    )


def compile_soql(text: str, objects: dict[str, ObjectSpec], lookup: Lookup, base_path: str) -> CompiledQuery:
    """Parse and bind in one step."""
    return compile_query(parse(text), objects, lookup, base_path)


def evaluate(
    text: str,
    objects: dict[str, ObjectSpec],
    tables: dict[str, Sequence[Record]],
    base_path: str = "/services/data/v59.0",
) -> list[Record]:
    """Run a query over plain tables (object name -> records) and return projected records.

    A convenience for tests and tools; the server keeps its own cursors.
    """
    by_id = {r["Id"]: (name, r) for name, rows in tables.items() for r in rows if "Id" in r}
    compiled = compile_soql(text, objects, by_id.get, base_path)
    rows = compiled.run(tables.get(compiled.sobject, ()))
    return [compiled.project(r) for r in rows]
