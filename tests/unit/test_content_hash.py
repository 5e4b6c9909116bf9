"""``content_hash``: the hash the ledger compares to tell a changed record. Ledgers keep these hashes across
versions, so the canonical form they hash must not drift: sorted keys, compact separators, UTF-8."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from syncd.core.types import content_hash


def _json_form(data: Any) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({}, id="empty"),
        pytest.param(
            {"properties": {"email": "ana@example.com", "n": 1.5, "ok": True, "none": None}, "id": "501"},
            id="hubspot-record",
        ),
        pytest.param({"Name": "Zoë Ærø — 東京", "Quote": 'say "hi"\n\ttab\\'}, id="unicode-and-escapes"),
        pytest.param(
            {"AnnualRevenue": 12500000.0, "Employees": 42, "Score": -0.1, "Big": 2**63 - 1}, id="numbers"
        ),
        pytest.param({"b": [1, {"z": 1, "a": [None, False]}], "a": []}, id="nested-key-order"),
    ],
)
def test_the_hash_is_that_of_the_canonical_json_form(data: Any) -> None:
    assert content_hash(data) == _json_form(data)


def test_equal_content_in_another_key_order_hashes_alike() -> None:
    assert content_hash({"a": 1, "b": {"y": 2, "x": 3}}) == content_hash({"b": {"x": 3, "y": 2}, "a": 1})
    assert content_hash({"a": 1}) != content_hash({"a": 2})


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"n": 2**64 + 1}, id="integer-beyond-64-bits"),
        pytest.param({2: "x", 1: "y"}, id="keys-that-are-not-strings"),
    ],
)
def test_what_orjson_refuses_is_hashed_in_the_same_form(data: Any) -> None:
    assert content_hash(data) == _json_form(data)
