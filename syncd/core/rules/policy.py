"""The policy (``policy.toml``): stickiness, manual overrides, SLA re-assignment, hand-offs, accounts.

- ``[stickiness]``: an owner once assigned stays, except when the rep became inactive, the owning team
  changed (hand-off), a ``reassign`` routing rule now matches, or the SLA expired without activity.
- ``[manual_override]``: a human's owner change is kept for ``respect_days`` (0 turns overrides off).
- ``[sla]``: records in ``stages`` whose owner has shown no activity (``activity_field`` not after the
  assignment) within ``hours`` go to another rep.
- ``[handoffs]``: which teams get a Salesforce Lead created for a HubSpot-only person, and which hand-offs
  keep the previous owner as an influencer (account-based ownership: the seller stays on the account team).
- ``[accounts]``: when an account is a customer, and which team owns prospects.
- ``[caps]``: whether the backlog found by the first sync counts against the reps' daily caps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from syncd.core.rules.conditions import ALWAYS, Condition, FieldSet, compile_condition
from syncd.core.rules.limits import MAX_DAYS, MAX_HOURS
from syncd.core.rules.problems import STAGES_HINT, Problems, clip, did_you_mean, show


class StickinessModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: StrictBool = True


class OverrideModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    respect_days: float = Field(default=30, ge=0, le=MAX_DAYS)


class SlaModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stages: list[str] = Field(default_factory=list)
    hours: float = Field(default=48, gt=0, le=MAX_HOURS)
    activity_field: str | None = None


class HandoffModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    create_salesforce_lead_for: list[str] = Field(default_factory=list)
    keep_previous_owner_for: list[str] = Field(default_factory=list)
    # A Salesforce Lead or Contact a person deleted: "never" created again for the same person (the
    # default), "after_days N" once N days have passed since the deletion, "on_handoff" at the next hand-off.
    recreate_deleted: str = "never"


class AccountsModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer_when: dict[str, Any] | None = None
    customer_stage: str | None = None
    prospect_team: str | None = None
    # A HubSpot deal's owner: "account" follows its company's decided owner; "keep" leaves deals alone.
    deal_owner: Literal["account", "keep"] = "account"


class CapsModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # "exempt": records created before syncd's first sync (the backlog) are routed whatever the daily caps
    # and do not count against them, so the first sync cannot use up a day's capacity for new leads.
    backlog: Literal["exempt", "counts"] = "exempt"


class PolicyFileModel(BaseModel):
    """The schema of ``policy.toml``."""

    model_config = ConfigDict(extra="forbid")
    stickiness: StickinessModel = Field(default_factory=StickinessModel)
    manual_override: OverrideModel = Field(default_factory=OverrideModel)
    sla: SlaModel = Field(default_factory=SlaModel)
    handoffs: HandoffModel = Field(default_factory=HandoffModel)
    accounts: AccountsModel = Field(default_factory=AccountsModel)
    caps: CapsModel = Field(default_factory=CapsModel)


@dataclass(frozen=True)
class Policy:
    """Compiled policy."""

    sticky: bool
    override_days: float
    sla_stages: frozenset[str]
    sla_hours: float
    sla_activity_field: str | None
    create_lead_for: frozenset[str]
    keep_previous_owner_for: frozenset[str]
    customer_when: Condition
    customer_stage: str | None
    prospect_team: str | None
    backlog_exempt: bool = True
    # [handoffs] recreate_deleted, parsed: ("never" | "after_days" | "on_handoff", days).
    recreate_deleted: tuple[str, float] = ("never", 0.0)
    deal_owner: str = "account"


def parse_recreate(text: str) -> tuple[str, float] | None:
    """``"never"``, ``"on_handoff"`` or ``"after_days N"`` as (mode, days); None when it is neither."""
    words = text.split()
    if words in (["never"], ["on_handoff"]):
        return words[0], 0.0
    if len(words) == 2 and words[0] == "after_days":
        try:
            days = float(words[1])
        except ValueError:
            return None
        # Bounded like every duration: the plan adds it to a datetime.
        return ("after_days", days) if math.isfinite(days) and 0 <= days <= MAX_DAYS else None
    return None


def build_policy(
    model: PolicyFileModel,
    display: str,
    problems: Problems,
    person_fields: FieldSet,
    account_fields: FieldSet,
    teams: tuple[str, ...] | None,
    stages: tuple[str, ...],
) -> Policy | None:
    """Checks the policy's meaning; the compiled Policy or None after recording problems."""
    before = problems.error_count
    for s in model.sla.stages:
        if stages and s not in stages:
            problems.error(
                display,
                "sla",
                "stages",
                f'unknown stage "{clip(s)}"' + did_you_mean(s, stages) + STAGES_HINT,
                ref=("stage", s),
            )
    field = model.sla.activity_field
    if field is not None:
        kind = person_fields.kinds.get(field)
        if kind is None:
            problems.error(
                display,
                "sla",
                "activity_field",
                f'unknown field "{clip(field)}"'
                + (did_you_mean(field, person_fields.kinds) or " (fields are declared in fields.toml)"),
                ref=("field", field),
            )
        elif kind != "datetime":
            problems.error(
                display,
                "sla",
                "activity_field",
                f'"{clip(field)}" is a {kind} field; expected a datetime field',
            )
    elif model.sla.stages:
        problems.error(display, "sla", "activity_field", "needed to tell whether the owner worked the record")
    if teams is not None:
        for key in ("create_salesforce_lead_for", "keep_previous_owner_for"):
            for t in getattr(model.handoffs, key):
                if t not in teams:
                    problems.error(
                        display,
                        "handoffs",
                        key,
                        f'unknown team "{clip(t)}"' + did_you_mean(t, teams),
                        ref=("team", t),
                    )
        pt = model.accounts.prospect_team
        if pt is not None and pt not in teams:
            problems.error(
                display,
                "accounts",
                "prospect_team",
                f'unknown team "{clip(pt)}"' + did_you_mean(pt, teams),
                ref=("team", pt),
            )
    cs = model.accounts.customer_stage
    if cs is not None and stages and cs not in stages:
        problems.error(
            display,
            "accounts",
            "customer_stage",
            f'unknown stage "{clip(cs)}"' + did_you_mean(cs, stages) + STAGES_HINT,
            ref=("stage", cs),
        )
    recreate = parse_recreate(model.handoffs.recreate_deleted)
    if recreate is None:
        problems.error(
            display,
            "handoffs",
            "recreate_deleted",
            f'{show(model.handoffs.recreate_deleted)} is not one of "never", "on_handoff", '
            f'"after_days N" (N from 0 to {MAX_DAYS} days)',
        )
    customer_when: Condition | None = ALWAYS
    if model.accounts.customer_when is not None:
        customer_when = compile_condition(
            model.accounts.customer_when, account_fields, problems, display, "accounts", "customer_when"
        )
    elif cs is not None:
        problems.error(display, "accounts", "customer_when", "needed to tell which accounts are customers")
    if problems.error_count != before or customer_when is None or recreate is None:
        return None
    return Policy(
        sticky=model.stickiness.enabled,
        override_days=model.manual_override.respect_days,
        sla_stages=frozenset(model.sla.stages),
        sla_hours=model.sla.hours,
        sla_activity_field=field,
        create_lead_for=frozenset(model.handoffs.create_salesforce_lead_for),
        keep_previous_owner_for=frozenset(model.handoffs.keep_previous_owner_for),
        customer_when=customer_when,
        customer_stage=cs,
        prospect_team=model.accounts.prospect_team,
        backlog_exempt=model.caps.backlog == "exempt",
        recreate_deleted=recreate,
        deal_owner=model.accounts.deal_owner,
    )
