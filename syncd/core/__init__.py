"""The pure decision core: values, the systems' static facts, mapping, rules, linking, engine and planner.

Nothing here opens a database, a socket or a client, and nothing reads the clock: callers pass records, rules,
a view of the ledger and ``now``, and get decisions and actions back. ``tests/unit/test_core_purity.py``
imports every module below in a fresh interpreter and fails if ``sqlite3``, ``requests``, ``urllib3``, a
client library or the sandbox got loaded.
"""
