"""Loading one rules directory (mapping + rules of engagement) as a checked, compiled :class:`RuleSet`."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from syncd.core.mapping import Mapping, MappingFileModel, build_mapping
from syncd.core.rules.conditions import FieldKind, FieldSet
from syncd.core.rules.lifecycle import Lifecycle, LifecycleFileModel, build_lifecycle, stage_names
from syncd.core.rules.policy import Policy, PolicyFileModel, build_policy
from syncd.core.rules.problems import Problems, did_you_mean, parse_model, read_toml
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


def field_sets(mapping: Mapping, stages: tuple[str, ...]) -> tuple[FieldSet, FieldSet, FieldSet]:
    """The fields conditions may use: for scoring, for other person rules, for account rules."""
    account_kinds: dict[str, FieldKind] = {n: f.kind for n, f in mapping.fields_for("account").items()}
    account_kinds.update(ACCOUNT_COMPUTED)
    person_kinds: dict[str, FieldKind] = {n: f.kind for n, f in mapping.fields_for("person").items()}
    person_kinds.update(PERSON_COMPUTED)
    person_kinds.update({f"account.{n}": k for n, k in account_kinds.items()})
    scoring_kinds = {n: k for n, k in person_kinds.items() if n not in SCORE_FIELDS}
    stage_fields = frozenset({"stage", "account.stage"})
    return (
        FieldSet(scoring_kinds, stages, stage_fields, {f: "scoring computes it" for f in SCORE_FIELDS}),
        FieldSet(person_kinds, stages, stage_fields),
        FieldSet(account_kinds, stages, stage_fields),
    )


def check_directory(directory: Path) -> tuple[RuleSet | None, Problems]:
    """Loads and checks every file of a rules directory; the RuleSet (None on any error) and all problems."""
    problems = Problems()
    base = str(directory)
    if not directory.is_dir():
        problems.error(base, "", "", "not a directory")
        return None, problems
    models: dict[str, Any] = {}
    digest = hashlib.sha256()
    for name, model_type in FILES.items():
        path = directory / name
        display = str(path)
        if not path.is_file():
            problems.error(display, "", "", "missing: every rules directory has " + ", ".join(FILES))
            continue
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
        data = read_toml(path, display, problems)
        if data is not None:
            models[name] = parse_model(model_type, data, display, problems)
    for name, model_type in OPTIONAL_FILES.items():
        path = directory / name
        if path.is_file():
            digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
            data = read_toml(path, str(path), problems)
            if data is not None:
                models[name] = parse_model(model_type, data, str(path), problems)
    for extra in sorted(directory.glob("*.toml")):
        if extra.name not in FILES and extra.name not in OPTIONAL_FILES:
            problems.warning(
                str(extra), "", "", "not a syncd rules file; ignored" + did_you_mean(extra.name, FILES)
            )

    def disp(name: str) -> str:
        return str(directory / name)

    lifecycle_model: LifecycleFileModel | None = models.get("lifecycle.toml")
    stages = stage_names(lifecycle_model) if lifecycle_model else ()
    roster = None
    if models.get("roster.toml") is not None:
        roster = build_roster(models["roster.toml"], disp("roster.toml"), problems)
    teams = roster.teams if roster else None
    mapping = None
    if models.get("fields.toml") is not None:
        mapping = build_mapping(models["fields.toml"], disp("fields.toml"), problems, stages)
    lifecycle = scoring = routing = policy = None
    sets = field_sets(mapping, stages) if mapping else None
    if sets is not None:
        scoring_fields, person_fields, account_fields = sets
        if lifecycle_model is not None:
            lifecycle = build_lifecycle(
                lifecycle_model,
                disp("lifecycle.toml"),
                problems,
                person_fields,
                set(teams) if teams is not None else None,
            )
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
    if (
        problems.errors
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
    )
    return ruleset, problems


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
