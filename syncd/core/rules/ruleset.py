"""Loading one rules directory (mapping + rules of engagement) as a checked, compiled :class:`RuleSet`."""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from syncd.core.mapping import Mapping, MappingFileModel, build_mapping
from syncd.core.rules.conditions import FieldKind, FieldSet
from syncd.core.rules.lifecycle import (
    Lifecycle,
    LifecycleFileModel,
    build_lifecycle,
    check_stages,
    stage_names,
)
from syncd.core.rules.policy import Policy, PolicyFileModel, build_policy
from syncd.core.rules.problems import Problems, clip, did_you_mean, named, parse_model, read_toml
from syncd.core.rules.roster import Roster, RosterFileModel, build_roster
from syncd.core.rules.routing import Routing, RoutingFileModel, build_routing
from syncd.core.rules.scoring import Scoring, ScoringFileModel, build_scoring
from syncd.core.rules.teams import Teams, TeamsFileModel, build_teams
from syncd.errors import MappingError

FILES: dict[str, type[BaseModel]] = {
    "fields.toml": MappingFileModel,
    "lifecycle.toml": LifecycleFileModel,
    "scoring.toml": ScoringFileModel,
    "roster.toml": RosterFileModel,
    "routing.toml": RoutingFileModel,
    "policy.toml": PolicyFileModel,
}
# Files a rules directory may have: without teams.toml, syncd manages no account team.
OPTIONAL_FILES: dict[str, type[BaseModel]] = {"teams.toml": TeamsFileModel}

# Values the engine computes for a person, usable in conditions next to the mapping's logical fields.
PERSON_COMPUTED: dict[str, FieldKind] = {
    "stage": "text",
    "score": "number",
    "fit_score": "number",
    "engagement_score": "number",
    "hubspot_only": "boolean",
    "salesforce_object": "text",
    "has_account": "boolean",
}
# Values the engine computes for an account (a person's conditions see them as ``account.<name>``).
ACCOUNT_COMPUTED: dict[str, FieldKind] = {
    "customer": "boolean",
    "open_opportunities": "number",
    "won_opportunities": "number",
    # With teams.toml: the account's tier (its name, decided before routing) and its won opportunities' sum.
    "tier": "text",
    "won_amount": "number",
}
# Computed values that depend on scoring, which scoring rules themselves cannot use.
SCORE_FIELDS = ("score", "fit_score", "engagement_score")


@dataclass(frozen=True)
class RuleSet:
    """Every rule of one directory, compiled; ``digest`` identifies the exact file contents."""

    directory: Path
    digest: str
    mapping: Mapping
    lifecycle: Lifecycle
    scoring: Scoring
    roster: Roster
    routing: Routing
    policy: Policy
    person_fields: FieldSet
    account_fields: FieldSet
    warnings: tuple[str, ...] = ()
    teams: Teams | None = None
    # The digested files' text, by file name: what the ledger keeps of each rule set decisions were made
    # under, so that a later change of rules can tell which decisions it affects (syncd.core.rules.change).
    sources: tuple[tuple[str, str], ...] = ()


def field_sets(mapping: Mapping, stages: tuple[str, ...]) -> tuple[FieldSet, FieldSet, FieldSet]:
    """The fields conditions may use: for scoring, for other person rules, for account rules."""
    account_kinds: dict[str, FieldKind] = {n: f.kind for n, f in mapping.fields_for("account").items()}
    account_kinds.update(ACCOUNT_COMPUTED)
    person_kinds: dict[str, FieldKind] = {n: f.kind for n, f in mapping.fields_for("person").items()}
    person_kinds.update(PERSON_COMPUTED)
    person_kinds.update({f"account.{n}": k for n, k in account_kinds.items()})
    scoring_kinds = {n: k for n, k in person_kinds.items() if n not in SCORE_FIELDS}
    stage_fields = frozenset({"stage", "account.stage"})
    account_forms = {n: f for n in account_kinds if (f := mapping.text_form(n)) is not None}
    person_forms = {n: f for n in person_kinds if (f := mapping.text_form(n)) is not None}
    person_forms.update({f"account.{n}": f for n, f in account_forms.items()})
    unavailable = {f: "scoring computes it" for f in SCORE_FIELDS}
    return (
        FieldSet(scoring_kinds, stages, stage_fields, unavailable, person_forms),
        FieldSet(person_kinds, stages, stage_fields, forms=person_forms),
        FieldSet(account_kinds, stages, stage_fields, forms=account_forms),
    )


def check_directory(directory: Path) -> tuple[RuleSet | None, Problems]:
    """Loads and checks every file of a rules directory; the RuleSet (None on any error) and all problems.

    A file that cannot be read or parsed is one line; the files that depend on it are checked only as far
    as they do not need it, so one mistake is not reported again as the errors it causes elsewhere.
    """
    problems = Problems()
    base = str(directory)
    try:
        is_dir = directory.is_dir()
        exists = is_dir or os.path.lexists(directory)
    except (OSError, ValueError):
        is_dir = exists = False
    if not is_dir:
        problems.error(base, "", "", "not a directory" if exists else "no such directory")
        return None, problems
    models: dict[str, Any] = {}
    texts: dict[str, set[str]] = {}
    sources: list[tuple[str, str]] = []
    digest = hashlib.sha256()
    for name, model_type in FILES.items():
        path = directory / name
        display = str(path)
        if not os.path.lexists(path):
            problems.error(display, "", "", "missing: every rules directory has " + ", ".join(FILES))
            continue
        data, raw = read_toml(path, display, problems)
        digest.update(name.encode() + b"\0" + raw + b"\0")
        if data is not None:
            sources.append((name, raw.decode()))
            texts[name] = _words(data)
            models[name] = parse_model(model_type, data, display, problems)
    for name, model_type in OPTIONAL_FILES.items():
        path = directory / name
        if os.path.lexists(path):
            data, raw = read_toml(path, str(path), problems)
            digest.update(name.encode() + b"\0" + raw + b"\0")
            if data is not None:
                sources.append((name, raw.decode()))
                texts[name] = _words(data)
                models[name] = parse_model(model_type, data, str(path), problems)
    try:
        extras = sorted(directory.glob("*.toml"))
    except OSError:
        extras = []
    for extra in extras:
        if extra.name not in FILES and extra.name not in OPTIONAL_FILES:
            problems.warning(
                str(extra), "", "", "not a syncd rules file; ignored" + did_you_mean(extra.name, FILES)
            )

    def disp(name: str) -> str:
        return str(directory / name)

    roster = None
    if models.get("roster.toml") is not None:
        roster = build_roster(models["roster.toml"], disp("roster.toml"), problems)
    teams = roster.teams if roster else None
    lifecycle_model: LifecycleFileModel | None = models.get("lifecycle.toml")
    # Stage names are checked by every other file only when the lifecycle itself is sound.
    stages: tuple[str, ...] = ()
    if lifecycle_model is not None and check_stages(
        lifecycle_model, disp("lifecycle.toml"), problems, set(teams) if teams is not None else None
    ):
        stages = stage_names(lifecycle_model)
    mapping = None
    if models.get("fields.toml") is not None:
        mapping = build_mapping(models["fields.toml"], disp("fields.toml"), problems, stages)
    lifecycle = scoring = routing = policy = None
    sets = field_sets(mapping, stages) if mapping else None
    if sets is not None:
        scoring_fields, person_fields, account_fields = sets
        if lifecycle_model is not None and stages:
            lifecycle = build_lifecycle(lifecycle_model, disp("lifecycle.toml"), problems, person_fields)
        if models.get("scoring.toml") is not None:
            scoring = build_scoring(
                models["scoring.toml"], disp("scoring.toml"), problems, scoring_fields, stages
            )
        if models.get("routing.toml") is not None:
            routing = build_routing(
                models["routing.toml"],
                disp("routing.toml"),
                problems,
                person_fields,
                account_fields,
                roster,
                stages,
            )
        if models.get("policy.toml") is not None:
            policy = build_policy(
                models["policy.toml"],
                disp("policy.toml"),
                problems,
                person_fields,
                account_fields,
                teams,
                stages,
            )
        if policy is not None and lifecycle is not None and policy.customer_stage is not None:
            customer = lifecycle.stage(policy.customer_stage)
            if customer is not None and customer.entry is None:
                problems.warning(
                    disp("lifecycle.toml"),
                    f'stage "{customer.name}"',
                    "entry",
                    "no entry condition: contacts of customer accounts will not move here",
                )
    account_teams = None
    # Only over a valid roster and routing: otherwise every pool a role names would be one more error.
    if (
        sets is not None
        and roster is not None
        and routing is not None
        and models.get("teams.toml") is not None
    ):
        account_teams = build_teams(
            models["teams.toml"], disp("teams.toml"), problems, sets[2], roster, routing
        )
    declared = {
        "stage": ("lifecycle.toml", "stage", stages),
        "field": ("fields.toml", "field", tuple(mapping.fields) if mapping else ()),
        "queue": ("roster.toml", "queue", roster.queues if roster else ()),
    }
    for kind, (home, label, names) in declared.items():
        _renamed(problems, kind, disp(home), label, names, texts, home)
    if (
        problems.error_count
        or sets is None
        or mapping is None
        or lifecycle is None
        or scoring is None
        or roster is None
        or routing is None
        or policy is None
    ):
        return None, problems
    ruleset = RuleSet(
        directory=directory,
        digest=digest.hexdigest(),
        mapping=mapping,
        lifecycle=lifecycle,
        scoring=scoring,
        roster=roster,
        routing=routing,
        policy=policy,
        person_fields=sets[1],
        account_fields=sets[2],
        warnings=tuple(str(w) for w in problems.warnings),
        teams=account_teams,
        sources=tuple(sources),
    )
    return ruleset, problems


def _words(data: Any) -> set[str]:
    """Every key and text value of a parsed file: the names it may refer to."""
    out: set[str] = set()
    stack = [data]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            out.update(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, str):
            out.add(node)
    return out


def _renamed(
    problems: Problems,
    kind: str,
    display: str,
    label: str,
    names: tuple[str, ...],
    texts: dict[str, set[str]],
    home: str,
) -> None:
    """A name declared in ``home`` that no other file uses, close to a name the others use (twice or
    more) but ``home`` does not declare, was most likely renamed in ``home``: said first, against
    ``home``."""
    if not names:
        return
    used = set().union(*(words for name, words in texts.items() if name != home))
    unused = {n for n in names if n not in used}
    for missing, uses in problems.refs(kind).items():
        if uses < 2:
            # One use of an unknown name is as likely a typo where it is used as a rename here.
            continue
        missing = missing.removeprefix("account.")
        # The closest of all declared names must be the unused one: "contry" is a typo of the used
        # "country", not a rename of the unused "company".
        close = difflib.get_close_matches(missing, names, n=1, cutoff=0.6)
        if close and close[0] in unused:
            problems.error(
                display,
                named(label, close[0]),
                "name",
                f'no other file uses this {label}; they still say "{clip(missing)}": renamed? '
                "rename it there too, or back here",
                first=True,
            )


def sources_digest(sources: Iterable[tuple[str, str]]) -> str:
    """The digest of a rule set's files as :func:`check_directory` computes it from their bytes."""
    digest = hashlib.sha256()
    for name, text in sources:
        digest.update(name.encode() + b"\0" + text.encode() + b"\0")
    return digest.hexdigest()


def ruleset_from_sources(sources: Iterable[tuple[str, str]], label: str) -> RuleSet | None:
    """The rule set of files kept as text (the ledger's copy of an earlier rule set), compiled again;
    None when they no longer load (say, a file this version of syncd refuses). ``label`` names them."""
    with tempfile.TemporaryDirectory(prefix="syncd-rules-") as tmp:
        for name, text in sources:
            if name not in FILES and name not in OPTIONAL_FILES:
                return None
            (Path(tmp) / name).write_text(text, encoding="utf-8")
        ruleset, _ = check_directory(Path(tmp))
    if ruleset is None:
        return None
    return dataclasses.replace(ruleset, directory=Path(label))


def load_ruleset(directory: Path) -> RuleSet:
    """The compiled rule set of a directory; raises MappingError listing every problem line when invalid.

    Warnings do not stop loading; they are kept in ``RuleSet.warnings`` for the caller to log.
    """
    ruleset, problems = check_directory(Path(directory))
    if ruleset is None:
        lines = [str(p) for p in problems.errors]
        count = len(lines)
        head = lines[0] if count == 1 else f"{count} problems in {directory}; first: {lines[0]}"
        raise MappingError(head, problems=lines)
    return ruleset
