"""Record ids as the real systems make them.

Salesforce: 15 case-sensitive characters (3-character key prefix, then a base-62 sequence), plus a
3-character suffix that encodes the case of the first 15, so the 18-character form survives
case-insensitive handling. HubSpot: decimal strings.
"""

from __future__ import annotations

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def sf_checksum(id15: str) -> str:
    """The 3-character case-checksum suffix of a 15-character Salesforce id."""
    out = []
    for chunk in (id15[0:5], id15[5:10], id15[10:15]):
        bits = sum(1 << i for i, ch in enumerate(chunk) if "A" <= ch <= "Z")
        out.append(_SUFFIX[bits])
    return "".join(out)


def sf_id(prefix: str, number: int, pod: str = "8d0") -> str:
    """The 18-character id of the number-th record with this key prefix (e.g. "00Q" for Lead)."""
    digits = []
    n = number
    for _ in range(9):
        n, r = divmod(n, 62)
        digits.append(_BASE62[r])
    id15 = prefix + pod + "".join(reversed(digits))
    return id15 + sf_checksum(id15)


def is_valid_sf_id(value: str) -> bool:
    """True for a well-formed 15- or 18-character Salesforce id (18: with a matching checksum)."""
    if len(value) not in (15, 18) or not all(ch in _BASE62 for ch in value):
        return False
    if len(value) == 18:
        return sf_checksum(value[:15]) == value[15:].upper()
    return True


def sf_normalize(value: str) -> str:
    """The 18-character form of a valid 15- or 18-character id (ids compare equal in this form)."""
    return value if len(value) == 18 else value + sf_checksum(value)
