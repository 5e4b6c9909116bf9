"""The ledger's SQL schema, as an ordered list of forward migrations.

``MIGRATIONS[n]`` takes a ledger from schema version ``n`` to ``n + 1`` (version 0 is an empty file). The
version lives in ``PRAGMA user_version``; each migration runs in its own transaction together with the bump
of that number, so a crash during an upgrade leaves the file at the last whole version. Migrations are only
ever appended: a released step is never edited, because ledgers in the field already ran it.

Conventions every table follows: datetimes are ISO-8601 text in UTC with an explicit ``+00:00`` offset and
microseconds (so text order is time order); ids and keys are text; JSON columns hold canonical JSON text.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlite_utils import Database

from syncd.core.systems import SYSTEMS

# "sYnc" as a big-endian int: tells a syncd ledger apart from any other SQLite file.
APPLICATION_ID = 0x73596E63

RUN_STATUSES = ("running", "ok", "failed", "interrupted")
INTENT_STATES = ("pending", "sent", "confirmed", "failed")
LINK_METHODS = ("new", "stored_id", "email", "domain", "converted", "created")
KEY_KINDS = ("person", "account")


def _in(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


_V1 = f"""
CREATE TABLE runs (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    status      TEXT NOT NULL CHECK (status IN {_in(RUN_STATUSES)}),
    counters    TEXT NOT NULL DEFAULT '{{}}',
    error       TEXT,
    pid         INTEGER
);
CREATE INDEX runs_by_start ON runs (started_at);

-- One row per person or account syncd knows: the target of links, decisions and assignments.
CREATE TABLE entities (
    key        TEXT PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN {_in(KEY_KINDS)}),
    created_at TEXT NOT NULL
);

CREATE TABLE records (
    system      TEXT NOT NULL CHECK (system IN {_in(SYSTEMS)}),
    object      TEXT NOT NULL,
    id          TEXT NOT NULL,
    hash        TEXT NOT NULL,
    modified_at TEXT,
    deleted     INTEGER NOT NULL DEFAULT 0,
    -- 1 from the moment the content changes until the cycle says the change is fully processed, so a
    -- crash between staging and deciding cannot lose the change.
    dirty       INTEGER NOT NULL DEFAULT 1,
    email       TEXT,
    domain      TEXT,
    seen_run    TEXT REFERENCES runs (id),
    seen_at     TEXT NOT NULL,
    data        TEXT NOT NULL,
    PRIMARY KEY (system, object, id)
);
CREATE INDEX records_by_id ON records (system, id);
CREATE INDEX records_by_email ON records (email) WHERE email IS NOT NULL;
CREATE INDEX records_by_domain ON records (domain) WHERE domain IS NOT NULL;
CREATE INDEX records_dirty ON records (system, object) WHERE dirty = 1;

CREATE TABLE links (
    system    TEXT NOT NULL CHECK (system IN {_in(SYSTEMS)}),
    object    TEXT NOT NULL,
    id        TEXT NOT NULL,
    key       TEXT NOT NULL REFERENCES entities (key),
    how       TEXT NOT NULL CHECK (how IN {_in(LINK_METHODS)}),
    linked_at TEXT NOT NULL,
    run_id    TEXT,
    PRIMARY KEY (system, object, id)
);
CREATE INDEX links_by_key ON links (key);
CREATE INDEX links_by_id ON links (system, id);

CREATE TABLE watermarks (
    system     TEXT NOT NULL CHECK (system IN {_in(SYSTEMS)}),
    object     TEXT NOT NULL,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    run_id     TEXT,
    PRIMARY KEY (system, object)
);

CREATE TABLE outbox (
    id         TEXT PRIMARY KEY,
    run_id     TEXT NOT NULL REFERENCES runs (id),
    key        TEXT,
    system     TEXT NOT NULL CHECK (system IN {_in(SYSTEMS)}),
    object     TEXT NOT NULL,
    record_id  TEXT,
    create_key TEXT,
    fields     TEXT NOT NULL,
    reason     TEXT NOT NULL,
    state      TEXT NOT NULL DEFAULT 'pending' CHECK (state IN {_in(INTENT_STATES)}),
    attempts   INTEGER NOT NULL DEFAULT 0,
    error      TEXT,
    result_id  TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    -- An intent either updates a known record or creates one under an idempotency key, never both.
    CHECK ((record_id IS NULL) <> (create_key IS NULL))
);
CREATE INDEX outbox_open ON outbox (state) WHERE state IN ('pending', 'sent');
CREATE INDEX outbox_by_key ON outbox (key) WHERE key IS NOT NULL;
CREATE INDEX outbox_by_run ON outbox (run_id);

-- The latest value syncd itself wrote to each field, so its echo can be told from a human's change.
CREATE TABLE writes (
    system    TEXT NOT NULL CHECK (system IN {_in(SYSTEMS)}),
    object    TEXT NOT NULL,
    record_id TEXT NOT NULL,
    field     TEXT NOT NULL,
    value     TEXT NOT NULL,
    at        TEXT NOT NULL,
    run_id    TEXT,
    intent_id TEXT,
    PRIMARY KEY (system, object, record_id, field)
);

CREATE TABLE quarantine (
    system          TEXT NOT NULL CHECK (system IN {_in(SYSTEMS)}),
    object          TEXT NOT NULL,
    record_id       TEXT NOT NULL,
    key             TEXT,
    reason          TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    first_seen_at   TEXT NOT NULL,
    last_attempt_at TEXT NOT NULL,
    next_attempt_at TEXT NOT NULL,
    reported        INTEGER NOT NULL DEFAULT 0,
    run_id          TEXT,
    PRIMARY KEY (system, object, record_id)
);
CREATE INDEX quarantine_by_due ON quarantine (next_attempt_at);

PRAGMA application_id = {APPLICATION_ID};
"""

_V2 = f"""
CREATE TABLE decisions (
    key        TEXT PRIMARY KEY REFERENCES entities (key),
    stage      TEXT,
    score      REAL,
    owner      TEXT,
    team       TEXT,
    digest     TEXT NOT NULL,
    trace      TEXT NOT NULL,
    data       TEXT NOT NULL DEFAULT '{{}}',
    decided_at TEXT NOT NULL,
    run_id     TEXT
);

CREATE TABLE decision_history (
    seq        INTEGER PRIMARY KEY,
    key        TEXT NOT NULL REFERENCES entities (key),
    at         TEXT NOT NULL,
    run_id     TEXT,
    stage      TEXT,
    score      REAL,
    owner      TEXT,
    team       TEXT,
    prev_stage TEXT,
    prev_score REAL,
    prev_owner TEXT,
    prev_team  TEXT,
    digest     TEXT NOT NULL,
    trace      TEXT NOT NULL
);
CREATE INDEX decision_history_by_key ON decision_history (key, seq);

CREATE TABLE assignments (
    key         TEXT PRIMARY KEY REFERENCES entities (key),
    rep         TEXT NOT NULL,
    team        TEXT NOT NULL,
    assigned_at TEXT NOT NULL,
    reason      TEXT NOT NULL,
    run_id      TEXT
);
CREATE INDEX assignments_by_rep ON assignments (rep);

CREATE TABLE round_robin (
    pool       TEXT PRIMARY KEY,
    state      TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE rep_daily (
    rep   TEXT NOT NULL,
    day   TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (rep, day)
);

CREATE TABLE overrides (
    seq            INTEGER PRIMARY KEY,
    key            TEXT NOT NULL REFERENCES entities (key),
    system         TEXT NOT NULL CHECK (system IN {_in(SYSTEMS)}),
    object         TEXT NOT NULL,
    record_id      TEXT NOT NULL,
    field          TEXT NOT NULL,
    rep            TEXT,
    previous       TEXT,
    changed_by     TEXT,
    seen_at        TEXT NOT NULL,
    honoured_until TEXT NOT NULL,
    run_id         TEXT
);
CREATE INDEX overrides_by_key ON overrides (key, seq);
"""


def _v1_storage(db: Database) -> None:
    """Runs, entities, records, links, watermarks, outbox, writes, quarantine: what a cycle stages."""
    db.executescript(_V1)


def _v2_engine_state(db: Database) -> None:
    """Decisions and their history, sticky assignments, round robin, daily caps, manual overrides."""
    db.executescript(_V2)


_V3 = """
-- The systems' roster as last listed: what plan decides with, and what a roster change is measured against.
CREATE TABLE reps (
    system         TEXT NOT NULL,
    kind           TEXT NOT NULL,
    id             TEXT NOT NULL,
    email          TEXT,
    name           TEXT NOT NULL,
    active         INTEGER NOT NULL,
    user_id        TEXT,
    developer_name TEXT,
    seen_at        TEXT NOT NULL,
    PRIMARY KEY (system, id)
);
CREATE INDEX decisions_by_owner ON decisions (owner);
"""


def _v3_roster(db: Database) -> None:
    """The systems' roster, and decisions by owner (a rep who leaves makes their decisions due)."""
    db.executescript(_V3)


_V4 = """
-- Merges in the systems: a merged-away record (HubSpot hs_merged_object_ids, Salesforce MasterRecordId) stays
-- known by its id as an alias of the record it was merged into; ``applied`` once its links moved there.
CREATE TABLE aliases (
    system    TEXT NOT NULL,
    object    TEXT NOT NULL,
    id        TEXT NOT NULL,
    survivor  TEXT NOT NULL,
    merged_at TEXT NOT NULL,
    applied   INTEGER NOT NULL DEFAULT 0,
    run_id    TEXT,
    PRIMARY KEY (system, object, id)
);
CREATE INDEX aliases_pending ON aliases (system, object) WHERE applied = 0;
CREATE INDEX aliases_by_survivor ON aliases (system, survivor);
"""


def _v4_aliases(db: Database) -> None:
    """Aliases: the ids of records merged away in either system, and the record each was merged into."""
    db.executescript(_V4)


_V5 = """
-- Every content version of every pulled record, within retention: what `syncd backtest` replays. A version is
-- dated by the system's modification time (else when syncd saw it); a ledger upgraded to this version starts
-- with one version per record, dated by the record's own modification time.
CREATE TABLE record_versions (
    seq         INTEGER PRIMARY KEY,
    system      TEXT NOT NULL,
    object      TEXT NOT NULL,
    id          TEXT NOT NULL,
    modified_at TEXT NOT NULL,
    deleted     INTEGER NOT NULL DEFAULT 0,
    email       TEXT,
    domain      TEXT,
    hash        TEXT NOT NULL,
    data        TEXT NOT NULL,
    seen_at     TEXT NOT NULL,
    run_id      TEXT
);
CREATE INDEX record_versions_by_time ON record_versions (modified_at);
CREATE INDEX record_versions_by_record ON record_versions (system, object, id, modified_at);
INSERT INTO record_versions (system, object, id, modified_at, deleted, email, domain, hash, data, seen_at, run_id)
    SELECT system, object, id, COALESCE(modified_at, seen_at), deleted, email, domain, hash, data, seen_at, seen_run
    FROM records ORDER BY COALESCE(modified_at, seen_at);
"""


def _v5_record_versions(db: Database) -> None:
    """Record versions (the history `syncd backtest` replays), started from the records already staged."""
    db.executescript(_V5)


_V6 = """
-- Domain lookups by object: the accounts of a domain without walking every person that shares it. It
-- replaces the index by domain alone (every random-order index costs page writes on each staged page).
CREATE INDEX records_by_object_domain ON records (system, object, domain) WHERE domain IS NOT NULL;
DROP INDEX records_by_domain;

-- The dirty flags, out of the records table: marking a decided key's records clean deletes these small rows
-- instead of rewriting every page of record data the key's records sit on (keys come in no record order).
CREATE TABLE dirty (
    system TEXT NOT NULL,
    object TEXT NOT NULL,
    id     TEXT NOT NULL,
    PRIMARY KEY (system, object, id)
) WITHOUT ROWID;
INSERT INTO dirty (system, object, id) SELECT system, object, id FROM records WHERE dirty = 1;
DROP INDEX records_dirty;
ALTER TABLE records DROP COLUMN dirty;
"""


def _v6_lookups(db: Database) -> None:
    """An index for looking up an object's records by domain (accounts of a person's domain); the dirty
    flags in their own table. Ledgers created before this version also switch to incremental vacuum, once,
    after the upgrade (retention)."""
    db.executescript(_V6)


_V7 = """
-- Account teams (Salesforce AccountTeamMember) as last read, one row per account and user. ``managed`` is
-- syncd's own knowledge: 1 for a member syncd added (or re-added after an owner change erased the team),
-- 0 for one a human added; CreatedById cannot tell a re-created member from a human's.
CREATE TABLE team_members (
    account_id         TEXT NOT NULL,
    user_id            TEXT NOT NULL,
    member_id          TEXT,
    role               TEXT,
    account_access     TEXT,
    opportunity_access TEXT,
    case_access        TEXT,
    managed            INTEGER NOT NULL,
    seen_at            TEXT NOT NULL,
    run_id             TEXT,
    PRIMARY KEY (account_id, user_id)
);
CREATE INDEX team_members_by_member ON team_members (member_id);
-- Each account's last team decision: tier, owner, seats and how they were filled (explain, report).
CREATE TABLE team_decisions (
    key            TEXT PRIMARY KEY,
    account_id     TEXT,
    tier           TEXT,
    owner          TEXT,
    previous_owner TEXT,
    owner_since    TEXT,
    decided_at     TEXT NOT NULL,
    data           TEXT NOT NULL DEFAULT '{}',
    run_id         TEXT
);
"""


def _v7_teams(db: Database) -> None:
    """Account teams: members with syncd's managed flag, and each account's last team decision."""
    db.executescript(_V7)


_V8 = """
-- What an idle cycle asks of every decision, answered from indexes instead of a walk over all of them:
-- is any due (its due time, kept in the decision's data), is any decided under other rules (its digest).
CREATE INDEX decisions_by_due ON decisions (json_extract(data, '$.due_at'));
CREATE INDEX decisions_by_digest ON decisions (digest);
"""


def _v8_due_index(db: Database) -> None:
    """Indexes on each decision's due time and rules digest: an idle cycle finds nothing due in O(log n)."""
    db.executescript(_V8)


_V9 = """
-- The text of each rule set decisions were made under, by its digest: a later change of rules is compared
-- with it to find the decisions it affects (syncd.core.rules.change). A few kilobytes per rule set.
CREATE TABLE rulesets (
    digest   TEXT PRIMARY KEY,
    sources  BLOB NOT NULL,
    saved_at TEXT NOT NULL
);
"""


def _v9_rulesets(db: Database) -> None:
    """The rule sets decisions were made under, kept as text by digest."""
    db.executescript(_V9)


_V10 = """
-- The people of a company (account teams, persons of an account) are found by their records' domain; with
-- the record's id in the index the lookup never reads the record itself (a row of a few kilobytes).
CREATE INDEX records_by_object_domain_id ON records (system, object, domain, id) WHERE domain IS NOT NULL;
DROP INDEX records_by_object_domain;
"""


def _v10_domain_index_covers_id(db: Database) -> None:
    """The records-by-domain index carries the record id: a domain lookup reads the index only."""
    db.executescript(_V10)


MIGRATIONS: list[Callable[[Database], None]] = [
    _v1_storage,
    _v2_engine_state,
    _v3_roster,
    _v4_aliases,
    _v5_record_versions,
    _v6_lookups,
    _v7_teams,
    _v8_due_index,
    _v9_rulesets,
    _v10_domain_index_covers_id,
]
SCHEMA_VERSION = len(MIGRATIONS)
