"""``syncd report accounts``: the key-account risk — the most valuable customers and how many reps they hang on.

The top 20 % of customer accounts (customer as policy.toml ``[accounts]`` says) by annual revenue, else by
won amount, each with:

- its tier (as the systems hold it, and as teams.toml would set it), its owner and its team by role;
- its **distinct reps**: the owner, the team's members, the owners of its contacts and of its opportunities
  (queues and the integration user are nobody);
- the **relationship age**: since the ledger last saw its owner change (its decision history), else since the
  account was created;
- a **key contact map**: its contacts by seniority (read from the title) and recent activity (HubSpot's last
  engagement, else the last change);
- flags: **single-threaded** (one distinct rep) and **long-term single-threaded** (one rep for more than two
  years).

The summary counts them, and how many single-threaded accounts the rules allow (an account whose tier and
stage require fewer than two seats may keep one rep). The data comes from the ledger (what the last cycle
pulled: no API call) or, with ``live``, from Salesforce and HubSpot through the connectors (read only).
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from syncd.core.rules import RuleSet
from syncd.core.teams import tier_of
from syncd.core.types import RepDirectory

__all__ = ["AccountRisk", "AccountsReport", "KeyContact", "build_report", "from_ledger", "from_systems"]

TOP_SHARE = 0.2
LONG_TERM = timedelta(days=730)
CONTACTS_SHOWN = 5
# Seniority from a job title, highest first (the first pattern that matches).
_SENIORITY: tuple[tuple[int, str, re.Pattern[str]], ...] = (
    (5, "executive", re.compile(r"\b(chief|c[eiotfm]o|founder|owner|president|partner)\b", re.I)),
    (4, "vice president", re.compile(r"\b(vp|svp|evp|vice president)\b", re.I)),
    (3, "director", re.compile(r"\b(director|head)\b", re.I)),
    (2, "manager", re.compile(r"\b(manager|lead|principal)\b", re.I)),
)


@dataclass(frozen=True, slots=True)
class KeyContact:
    name: str
    title: str
    seniority: int
    level: str
    owner: str | None
    last_activity: str | None


@dataclass(frozen=True, slots=True)
class AccountRisk:
    account_id: str
    name: str
    value: float
    value_basis: str
    tier: str | None
    rules_tier: str | None
    top_tier: bool
    owner: str | None
    team: dict[str, list[str]]
    reps: list[str]
    relationship_since: str | None
    relationship_years: float | None
    single_threaded: bool
    long_term_single_threaded: bool
    single_threaded_allowed: bool
    contacts: list[KeyContact] = field(default_factory=list)


@dataclass(frozen=True)
class AccountsReport:
    generated_at: str
    source: str
    accounts: list[AccountRisk]
    summary: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "generated_at": self.generated_at,
            "source": self.source,
            "summary": self.summary,
            "accounts": [asdict(a) for a in self.accounts],
        }

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(
            [
                "account_id",
                "name",
                "value",
                "value_basis",
                "tier",
                "rules_tier",
                "owner",
                "team",
                "distinct_reps",
                "reps",
                "relationship_since",
                "single_threaded",
                "long_term_single_threaded",
                "key_contacts",
            ]
        )
        for a in self.accounts:
            writer.writerow(
                [
                    a.account_id,
                    a.name,
                    f"{a.value:.0f}",
                    a.value_basis,
                    a.tier or "",
                    a.rules_tier or "",
                    a.owner or "",
                    "; ".join(f"{role}: {', '.join(reps)}" for role, reps in a.team.items()),
                    len(a.reps),
                    " ".join(a.reps),
                    a.relationship_since or "",
                    "yes" if a.single_threaded else "no",
                    "yes" if a.long_term_single_threaded else "no",
                    "; ".join(f"{c.name} ({c.title or c.level})" for c in a.contacts),
                ]
            )
        return out.getvalue()

    def text(self) -> str:
        s = self.summary
        lines = [
            f"Key accounts: the top {s['top']} of {s['customers']} customer accounts by value ({self.source})",
            f"  single-threaded: {s['single_threaded']} (top tier: {s['single_threaded_top_tier']}; "
            f"the rules allow {s['single_threaded_allowed']}), long-term single-threaded: "
            f"{s['long_term_single_threaded']}",
            "",
        ]
        for a in self.accounts:
            flag = (
                "LONG-TERM SINGLE-THREADED"
                if a.long_term_single_threaded
                else "SINGLE-THREADED"
                if a.single_threaded
                else f"{len(a.reps)} reps"
            )
            years = f", {a.relationship_years:.1f} y" if a.relationship_years is not None else ""
            lines.append(
                f"{a.name} [{a.tier or '-'} -> {a.rules_tier or '-'}] {a.value:,.0f} ({a.value_basis}): "
                f"owner {a.owner or '-'}{years}; {flag}"
            )
            for role, reps in a.team.items():
                lines.append(f"    {role}: {', '.join(reps)}")
            for c in a.contacts:
                lines.append(
                    f"    contact {c.name} — {c.title or c.level} (seniority {c.seniority}), "
                    f"owner {c.owner or '-'}, last activity {c.last_activity or '-'}"
                )
        return "\n".join(lines)

    def chart_svg(self) -> str:
        """Distinct reps per key account, as a pygal bar chart (SVG text)."""
        import pygal

        counts = Counter(min(len(a.reps), 5) for a in self.accounts)
        chart = pygal.Bar(title="Key accounts by distinct reps", show_legend=False, height=300)
        labels = ["1", "2", "3", "4", "5+"]
        chart.x_labels = labels
        chart.add("accounts", [counts.get(i + 1, 0) for i in range(5)])
        return str(chart.render(is_unicode=True))


def seniority(title: str | None) -> tuple[int, str]:
    """(rank, level) of a job title: 5 executive ... 1 staff."""
    for rank, level, pattern in _SENIORITY:
        if title and pattern.search(title):
            return rank, level
    return 1, "staff"


def build_report(
    rules: RuleSet,
    directory: RepDirectory,
    *,
    accounts: Iterable[Mapping[str, Any]],
    contacts: Iterable[Mapping[str, Any]],
    opportunities: Iterable[Mapping[str, Any]],
    team: Iterable[Mapping[str, Any]],
    activity: Mapping[str, str] | None = None,
    owner_since: Mapping[str, datetime] | None = None,
    now: datetime,
    source: str,
) -> AccountsReport:
    """The report from Salesforce rows (Account, Contact, Opportunity, AccountTeamMember fields by their API
    names); ``activity`` maps a Contact id to its last engagement (HubSpot), ``owner_since`` an Account id
    to when the ledger saw its owner change last."""
    activity = activity or {}
    owner_since = owner_since or {}
    mapping = rules.mapping
    contacts_of: dict[str, list[Mapping[str, Any]]] = {}
    for c in contacts:
        if c.get("AccountId"):
            contacts_of.setdefault(str(c["AccountId"]), []).append(c)
    opps_of: dict[str, list[Mapping[str, Any]]] = {}
    for o in opportunities:
        if o.get("AccountId"):
            opps_of.setdefault(str(o["AccountId"]), []).append(o)
    team_of: dict[str, list[Mapping[str, Any]]] = {}
    for m in team:
        team_of.setdefault(str(m.get("AccountId")), []).append(m)

    def rep(user_id: Any) -> str | None:
        owner = directory.owner_from_salesforce(str(user_id)) if user_id else None
        return owner if owner is not None and not owner.startswith("queue:") else None

    customers: list[tuple[float, str, Mapping[str, Any], dict[str, Any]]] = []
    for a in accounts:
        ctx = dict(mapping.to_logical("salesforce", "Account", a, directory=directory))
        opps = opps_of.get(str(a["Id"]), [])
        ctx["open_opportunities"] = sum(1 for o in opps if not o.get("IsClosed"))
        ctx["won_opportunities"] = sum(1 for o in opps if o.get("IsWon"))
        ctx["won_amount"] = sum(float(o.get("Amount") or 0) for o in opps if o.get("IsWon"))
        customer = rules.policy.customer_stage is not None and rules.policy.customer_when.test(ctx)
        ctx["customer"] = customer
        if not customer:
            continue
        revenue = float(a.get("AnnualRevenue") or 0)
        value, basis = (revenue, "annual revenue") if revenue else (ctx["won_amount"], "won amount")
        customers.append((value, basis, a, ctx))
    customers.sort(key=lambda c: (-c[0], str(c[2].get("Name") or ""), str(c[2]["Id"])))
    top = customers[: math.ceil(len(customers) * TOP_SHARE)] if customers else []
    teams = rules.teams
    top_tier = teams.tiers[0].name if teams is not None and teams.tiers else None
    rows: list[AccountRisk] = []
    for value, basis, a, ctx in top:
        account_id = str(a["Id"])
        owner = rep(a.get("OwnerId"))
        by_role: dict[str, list[str]] = {}
        reps: set[str] = {owner} if owner else set()
        for m in team_of.get(account_id, []):
            who = rep(m.get("UserId"))
            if who is not None:
                by_role.setdefault(str(m.get("TeamMemberRole") or "(no role)"), []).append(who)
                reps.add(who)
        reps.update(r for c in contacts_of.get(account_id, []) if (r := rep(c.get("OwnerId"))))
        reps.update(r for o in opps_of.get(account_id, []) if (r := rep(o.get("OwnerId"))))
        tier = tier_of(teams, ctx) if teams is not None else None
        allowed = True
        if teams is not None:
            required = teams.required(tier.name if tier else None, "customer")
            allowed = len(required) < 2
        since = owner_since.get(account_id) or _dt(a.get("CreatedDate"))
        years = (now - since).days / 365.25 if since is not None else None
        single = len(reps) <= 1
        long_term = single and since is not None and now - since > LONG_TERM
        key_contacts = []
        for c in contacts_of.get(account_id, []):
            rank, level = seniority(c.get("Title"))
            name = " ".join(str(c[f]) for f in ("FirstName", "LastName") if c.get(f))
            last = activity.get(str(c["Id"])) or c.get("LastModifiedDate")
            key_contacts.append(
                KeyContact(name, str(c.get("Title") or ""), rank, level, rep(c.get("OwnerId")), last)
            )
        key_contacts.sort(key=lambda k: (-k.seniority, _neg_time(k.last_activity), k.name))
        rows.append(
            AccountRisk(
                account_id=account_id,
                name=str(a.get("Name") or ""),
                value=value,
                value_basis=basis,
                tier=a.get("Syncd_Tier__c"),
                rules_tier=tier.label if tier else None,
                top_tier=tier is not None and tier.name == top_tier,
                owner=owner,
                team=by_role,
                reps=sorted(reps),
                relationship_since=since.isoformat() if since else None,
                relationship_years=round(years, 2) if years is not None else None,
                single_threaded=single,
                long_term_single_threaded=long_term,
                single_threaded_allowed=allowed,
                contacts=key_contacts[:CONTACTS_SHOWN],
            )
        )
    summary = {
        "customers": len(customers),
        "top": len(rows),
        "top_tier": sum(1 for r in rows if r.top_tier),
        "single_threaded": sum(1 for r in rows if r.single_threaded),
        "single_threaded_top_tier": sum(1 for r in rows if r.single_threaded and r.top_tier),
        "long_term_single_threaded": sum(1 for r in rows if r.long_term_single_threaded),
        "single_threaded_allowed": sum(1 for r in rows if r.single_threaded and r.single_threaded_allowed),
        "distinct_reps": dict(sorted(Counter(len(r.reps) for r in rows).items())),
    }
    return AccountsReport(now.isoformat(), source, rows, summary)


def _dt(value: Any) -> datetime | None:
    if not value:
        return None
    text = str(value).replace("Z", "+00:00")
    if re.search(r"[+-]\d{4}$", text):
        text = text[:-2] + ":" + text[-2:]
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _neg_time(value: str | None) -> float:
    parsed = _dt(value)
    return -parsed.timestamp() if parsed else 0.0


# ------------------------------------------------------------------------------------------------ sources


def from_ledger(ledger: Any, rules: RuleSet, *, now: datetime) -> AccountsReport:
    """The report from what the last cycle pulled (no API call)."""
    from syncd.cycle.roster import Roster, reps_of

    directory = Roster.from_reps(reps_of(ledger.roster.load())).directory

    def rows(obj: str) -> list[Mapping[str, Any]]:
        return [{**r.data, "Id": r.id} for r in ledger.records.iterate("salesforce", obj) if not r.deleted]

    accounts = rows("Account")
    team = [
        {"AccountId": m.account_id, "UserId": m.user_id, "TeamMemberRole": m.role}
        for m in ledger.teams.all_members()
    ]
    activity: dict[str, str] = {}
    for r in ledger.records.iterate("hubspot", "contacts"):
        sf_id = r.data.get("syncd_salesforce_id")
        last = r.data.get("hs_last_sales_activity_timestamp") or r.data.get("notes_last_updated")
        if sf_id and last:
            activity[str(sf_id)] = str(last)
    since = from_ledger_owner_since(ledger, [a["Id"] for a in accounts])
    return build_report(
        rules,
        directory,
        accounts=accounts,
        contacts=rows("Contact"),
        opportunities=rows("Opportunity"),
        team=team,
        activity=activity,
        owner_since=since,
        now=now,
        source="ledger",
    )


def from_systems(config: Any, rules: RuleSet, *, now: datetime, ledger: Any | None = None) -> AccountsReport:
    """The report from Salesforce and HubSpot as they are now (read only), with the ledger's owner history
    when a ledger is given."""
    from syncd.connectors import connectors_from_config
    from syncd.cycle.roster import Roster

    sf, hs = connectors_from_config(config)
    try:
        directory = Roster.from_reps([*sf.list_reps(), *hs.list_reps()]).directory

        def rows(connector: Any, obj: str) -> list[dict[str, Any]]:
            return [
                {**r.fields, "Id": r.id}
                for page in connector.pull(obj)
                for r in page.records
                if not r.deleted
            ]

        accounts = rows(sf, "Account")
        activity: dict[str, str] = {}
        for c in rows(hs, "contacts"):
            last = c.get("hs_last_sales_activity_timestamp") or c.get("notes_last_updated")
            if c.get("syncd_salesforce_id") and last:
                activity[str(c["syncd_salesforce_id"])] = str(last)
        team = [r.fields for page in sf.pull_account_team_members(None) for r in page.records]
        since: dict[str, datetime] = {}
        if ledger is not None:
            since = from_ledger_owner_since(ledger, [a["Id"] for a in accounts])
        return build_report(
            rules,
            directory,
            accounts=accounts,
            contacts=rows(sf, "Contact"),
            opportunities=rows(sf, "Opportunity"),
            team=team,
            activity=activity,
            owner_since=since,
            now=now,
            source="live",
        )
    finally:
        sf.close()
        hs.close()


def from_ledger_owner_since(ledger: Any, account_ids: Sequence[str]) -> dict[str, datetime]:
    keys = ledger.identity.keys_of("salesforce", "Account", list(account_ids))
    since: dict[str, datetime] = {}
    for account_id, key in keys.items():
        changes = [c for c in ledger.decisions.history(key) if c.prev_owner and c.owner != c.prev_owner]
        if changes:
            since[account_id] = max(c.at for c in changes)
    return since
