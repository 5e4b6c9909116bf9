"""Realistic, deterministic seed data for the sandbox: the Northwind Software org in Salesforce and HubSpot.

One call fills both stores: the 24 reps, the integration user and the two lead queues, then accounts,
persons, opportunities and deals, with the mess syncd exists to fix (owners that disagree between the two
systems, leads owned by reps who left, duplicate emails, customer contacts owned by random reps, leads
parked in a queue). The same seed, size and ``now`` always give byte-identical data.

Names and company names come from Faker in the locale of each company's country; everything else is drawn
from one ``random.Random(seed)`` so the whole org is a pure function of its inputs.
"""

from __future__ import annotations

import bisect
import functools
import random
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from faker import Faker

from syncd.core.systems import RELATED_ACCESS_LEVELS, SALESFORCE_OBJECTS, TEAM_MEMBER_ROLES
from syncd.progress import NULL, Progress
from syncd.sandbox.ids import sf_id
from syncd.sandbox.store import Record, Store

COMPANY = "Northwind Software"
ORG_DOMAIN = "northwind.example"
INTEGRATION_EMAIL = f"integration@{ORG_DOMAIN}"
SIZES: dict[str, int] = {"small": 1_000, "medium": 20_000, "large": 200_000}
TERRITORIES: dict[str, tuple[str, ...]] = {
    "NA": ("US", "CA", "MX"),
    "EMEA": ("GB", "DE", "FR", "NL", "SE", "ES", "IT", "IE", "CH"),
    "APAC": ("JP", "AU", "IN", "SG"),
}
QUEUES: tuple[tuple[str, str], ...] = (
    ("Unassigned Leads", "Unassigned_Leads"),
    ("EMEA Lead Queue", "EMEA_Lead_Queue"),
)
# HubSpot's default association type ids for the primary contact->company and deal->company labels.
CONTACT_TO_COMPANY = 1
DEAL_TO_COMPANY = 5
_CHUNK = 10_000
# Persons generated between two progress reports (a report per person would cost more than it tells).
_PROGRESS_EVERY = 250
T = TypeVar("T")
_DAY_MS = 86_400_000


@dataclass(frozen=True)
class Rep:
    """One person at Northwind who can own records: a Salesforce User and a HubSpot owner."""

    first: str
    last: str
    team: str  # marketing | sales | account_management | customer_success
    role: str  # marketing | sdr | ae | account_manager | csm
    territory: str | None = None  # NA | EMEA | APAC for AEs
    active: bool = True
    out_of_office: bool = False  # a roster fact (rules files); the systems themselves do not know it

    @property
    def email(self) -> str:
        return f"{self.first.lower()}.{self.last.lower()}@{ORG_DOMAIN}"

    @property
    def title(self) -> str:
        if self.role == "ae":
            region = {"NA": "North America", "EMEA": "EMEA", "APAC": "APAC"}[self.territory or "NA"]
            return f"Account Executive, {region}"
        return _ROLE_TITLES[self.role]


_ROLE_TITLES = {
    "marketing": "Marketing Manager",
    "sdr": "Sales Development Representative",
    "account_manager": "Account Manager",
    "csm": "Customer Success Manager",
}
_DEPARTMENTS = {
    "marketing": "Marketing",
    "sales": "Sales",
    "account_management": "Account Management",
    "customer_success": "Customer Success",
}
_HS_TEAMS = {
    "marketing": "Marketing",
    "sdr": "Sales Development",
    "ae:NA": "Sales North America",
    "ae:EMEA": "Sales EMEA",
    "ae:APAC": "Sales APAC",
    "account_manager": "Account Management",
    "csm": "Customer Success",
}

REPS: tuple[Rep, ...] = (
    Rep("Nora", "Lindqvist", "marketing", "marketing"),
    Rep("Owen", "Price", "marketing", "marketing"),
    Rep("Grace", "Kim", "marketing", "marketing", active=False),
    Rep("Sam", "Patel", "sales", "sdr"),
    Rep("Lena", "Novak", "sales", "sdr"),
    Rep("Diego", "Ramos", "sales", "sdr"),
    Rep("Ivy", "Chen", "sales", "sdr", out_of_office=True),
    Rep("Jack", "Miller", "sales", "ae", "NA"),
    Rep("Emma", "Johnson", "sales", "ae", "NA"),
    Rep("Noah", "Brown", "sales", "ae", "NA"),
    Rep("Olivia", "Davis", "sales", "ae", "NA", active=False),
    Rep("Lukas", "Schmidt", "sales", "ae", "EMEA"),
    Rep("Chloe", "Martin", "sales", "ae", "EMEA"),
    Rep("Sofia", "Rossi", "sales", "ae", "EMEA"),
    Rep("Hugo", "Dubois", "sales", "ae", "EMEA", active=False),
    Rep("Kenji", "Tanaka", "sales", "ae", "APAC"),
    Rep("Priya", "Sharma", "sales", "ae", "APAC"),
    Rep("Mia", "Wong", "sales", "ae", "APAC"),
    Rep("Rachel", "Green", "account_management", "account_manager"),
    Rep("Daniel", "Cohen", "account_management", "account_manager"),
    Rep("Hannah", "Weber", "account_management", "account_manager"),
    Rep("Ben", "Carter", "customer_success", "csm"),
    Rep("Zoe", "Evans", "customer_success", "csm"),
    Rep("Isaac", "Moreau", "customer_success", "csm"),
)


def persons_for_size(size: str) -> int:
    """The number of persons of a named size (small, medium, large)."""
    return SIZES[size]


# ------------------------------------------------------------------------------------------- geography


@dataclass(frozen=True)
class _Country:
    code: str
    weight: float
    locale: str
    tld: str
    phone: str
    cities: tuple[tuple[str, str | None], ...]


_COUNTRIES: tuple[_Country, ...] = (
    _Country(
        "US",
        30,
        "en_US",
        "com",
        "+1",
        (
            ("San Francisco", "CA"),
            ("New York", "NY"),
            ("Austin", "TX"),
            ("Chicago", "IL"),
            ("Seattle", "WA"),
            ("Boston", "MA"),
            ("Denver", "CO"),
            ("Atlanta", "GA"),
        ),
    ),
    _Country(
        "CA",
        6,
        "en_US",
        "ca",
        "+1",
        (("Toronto", "ON"), ("Vancouver", "BC"), ("Montreal", "QC"), ("Calgary", "AB")),
    ),
    _Country(
        "MX",
        3,
        "es_MX",
        "com.mx",
        "+52",
        (("Mexico City", "CDMX"), ("Guadalajara", "JAL"), ("Monterrey", "NLE")),
    ),
    _Country(
        "GB",
        9,
        "en_GB",
        "co.uk",
        "+44",
        (("London", None), ("Manchester", None), ("Edinburgh", None), ("Bristol", None)),
    ),
    _Country(
        "DE",
        8,
        "de_DE",
        "de",
        "+49",
        (("Berlin", None), ("Munich", None), ("Hamburg", None), ("Frankfurt", None), ("Cologne", None)),
    ),
    _Country(
        "FR",
        5,
        "fr_FR",
        "fr",
        "+33",
        (("Paris", None), ("Lyon", None), ("Toulouse", None), ("Bordeaux", None)),
    ),
    _Country(
        "NL",
        3,
        "nl_NL",
        "nl",
        "+31",
        (("Amsterdam", None), ("Rotterdam", None), ("Utrecht", None), ("Eindhoven", None)),
    ),
    _Country("SE", 2, "sv_SE", "se", "+46", (("Stockholm", None), ("Gothenburg", None), ("Malmö", None))),
    _Country("ES", 2, "es_ES", "es", "+34", (("Madrid", None), ("Barcelona", None), ("Valencia", None))),
    _Country("IT", 2, "it_IT", "it", "+39", (("Milan", None), ("Rome", None), ("Turin", None))),
    _Country("IE", 1.5, "en_IE", "ie", "+353", (("Dublin", None), ("Cork", None), ("Galway", None))),
    _Country("CH", 1.5, "de_CH", "ch", "+41", (("Zurich", None), ("Geneva", None), ("Basel", None))),
    _Country(
        "JP",
        5,
        "ja_JP",
        "co.jp",
        "+81",
        (("Tokyo", None), ("Osaka", None), ("Yokohama", None), ("Fukuoka", None)),
    ),
    _Country(
        "AU",
        5,
        "en_AU",
        "com.au",
        "+61",
        (("Sydney", "NSW"), ("Melbourne", "VIC"), ("Brisbane", "QLD"), ("Perth", "WA")),
    ),
    _Country(
        "IN",
        4,
        "en_IN",
        "in",
        "+91",
        (("Bengaluru", "KA"), ("Mumbai", "MH"), ("Pune", "MH"), ("Hyderabad", "TG")),
    ),
    _Country("SG", 2, "en_GB", "com.sg", "+65", (("Singapore", None),)),
    # Outside every territory: routing must fall back for these.
    _Country("BR", 2, "pt_BR", "com.br", "+55", (("São Paulo", "SP"), ("Rio de Janeiro", "RJ"))),
    _Country("ZA", 1, "en_GB", "co.za", "+27", (("Cape Town", None), ("Johannesburg", None))),
    _Country("AE", 1, "en_GB", "ae", "+971", (("Dubai", None), ("Abu Dhabi", None))),
)
_TERRITORY_OF = {code: name for name, codes in TERRITORIES.items() for code in codes}

INDUSTRIES = (
    "Technology",
    "Financial Services",
    "Healthcare",
    "Manufacturing",
    "Retail",
    "Education",
    "Media",
    "Telecommunications",
    "Energy",
    "Consulting",
    "Transportation",
    "Government",
)
_INDUSTRY_WEIGHTS = (24, 12, 10, 12, 8, 5, 5, 5, 4, 8, 4, 3)
# (min employees, max employees, weight)
_SIZE_BANDS = ((2, 50, 34), (51, 200, 26), (201, 1000, 20), (1001, 5000, 12), (5001, 60000, 8))
_TITLES = (
    ("Chief Executive Officer", 2),
    ("Chief Technology Officer", 2),
    ("Chief Revenue Officer", 1),
    ("Chief Information Officer", 1),
    ("VP of Sales", 2),
    ("VP of Marketing", 2),
    ("VP Engineering", 2),
    ("Head of IT", 3),
    ("Head of Operations", 2),
    ("Director of Marketing", 3),
    ("Director of Sales Operations", 2),
    ("IT Director", 3),
    ("Engineering Manager", 4),
    ("Marketing Manager", 5),
    ("Sales Manager", 4),
    ("Operations Manager", 4),
    ("Product Manager", 4),
    ("Software Engineer", 6),
    ("Data Analyst", 4),
    ("Marketing Specialist", 4),
    ("Sales Representative", 3),
    ("Office Manager", 2),
    ("Consultant", 3),
    ("Student", 1),
)
_FREE_MAIL = ("gmail.com", "outlook.com", "yahoo.com", "hotmail.com", "icloud.com", "gmx.de", "proton.me")
# Legal forms and filler words left out of a company's domain name.
_LEGAL_WORDS = {
    "llc",
    "inc",
    "ltd",
    "plc",
    "gmbh",
    "ag",
    "kg",
    "sa",
    "sl",
    "srl",
    "spa",
    "bv",
    "nv",
    "ab",
    "hb",
    "oy",
    "kk",
    "co",
    "corp",
    "group",
    "and",
    "und",
    "et",
    "e",
    "y",
    "the",
    "of",
    "sons",
    "sc",
    "slne",
    "ohg",
    "mbh",
    "cie",
    "ltda",
    "asociados",
    "despacho",
    "cia",
}
_HS_SOURCES = (
    ("ORGANIC_SEARCH", 28),
    ("DIRECT_TRAFFIC", 14),
    ("EMAIL_MARKETING", 12),
    ("SOCIAL_MEDIA", 8),
    ("PAID_SEARCH", 14),
    ("REFERRALS", 8),
    ("OTHER_CAMPAIGNS", 5),
    ("PAID_SOCIAL", 6),
    ("OFFLINE", 5),
)
_LEAD_SOURCES = (
    ("Web", 45),
    ("Trade Show", 10),
    ("Partner", 8),
    ("Advertisement", 12),
    ("Employee Referral", 5),
    ("Purchased List", 6),
    ("Other", 14),
)
_DEAL_STAGE = {
    "Prospecting": "appointmentscheduled",
    "Qualification": "qualifiedtobuy",
    "Needs Analysis": "presentationscheduled",
    "Proposal/Price Quote": "decisionmakerboughtin",
    "Negotiation/Review": "contractsent",
    "Closed Won": "closedwon",
    "Closed Lost": "closedlost",
}
_OPEN_STAGES = (
    "Prospecting",
    "Qualification",
    "Needs Analysis",
    "Proposal/Price Quote",
    "Negotiation/Review",
)
_PRODUCTS = (
    "Platform",
    "Platform Expansion",
    "Analytics Add-on",
    "Enterprise Licence",
    "Renewal",
    "Pilot",
    "Professional Services",
    "Premium Support",
)
# The Lead Status a lifecycle stage usually shows in Salesforce (before syncd corrects anything).
_STATUS_FOR_STAGE = {
    "lead": "Nurturing",
    "marketingqualifiedlead": "Open - Not Contacted",
    "salesqualifiedlead": "Working - Contacted",
}
_HS_LEAD_STATUS = {
    "subscriber": ("NEW", None),
    "lead": ("NEW", "OPEN", "ATTEMPTED_TO_CONTACT"),
    "marketingqualifiedlead": ("OPEN", "ATTEMPTED_TO_CONTACT", "CONNECTED"),
    "salesqualifiedlead": ("IN_PROGRESS", "CONNECTED"),
    "opportunity": ("OPEN_DEAL",),
    "customer": (None,),
}


class _Weighted(Generic[T]):
    """Items with weights, drawn like ``random.choices`` but with the cumulative weights computed once."""

    def __init__(self, pairs: Iterable[tuple[T, float]]) -> None:
        items: list[T] = []
        self.cum: list[float] = []
        total = 0.0
        for item, weight in pairs:
            total += weight
            items.append(item)
            self.cum.append(total)
        self.items = tuple(items)
        self.total = total


_COUNTRY_W = _Weighted((c, c.weight) for c in _COUNTRIES)
_TITLE_W = _Weighted(_TITLES)
_SIZE_W = _Weighted(((low, high), w) for low, high, w in _SIZE_BANDS)
_INDUSTRY_W = _Weighted(zip(INDUSTRIES, _INDUSTRY_WEIGHTS, strict=True))
_LEAD_SOURCE_W = _Weighted(_LEAD_SOURCES)
_HS_SOURCE_W = _Weighted(_HS_SOURCES)
_CONTACT_KIND_W = _Weighted(
    (("linked_contact", 60), ("email_only_contact", 32), ("salesforce_only_contact", 8))
)
_HS_ONLY_STAGE_W = _Weighted((("subscriber", 35), ("lead", 45), ("marketingqualifiedlead", 20)))
_LEAD_STAGE_W = _Weighted((("lead", 20), ("marketingqualifiedlead", 35), ("salesqualifiedlead", 45)))
_SF_ONLY_STATUS_W = _Weighted(
    (
        ("Open - Not Contacted", 40),
        ("Working - Contacted", 25),
        ("Nurturing", 20),
        ("Closed - Not Converted", 15),
    )
)


# ------------------------------------------------------------------------------------------- formatting


def sf_datetime(ms: int) -> str:
    """Salesforce's wire format for a datetime: ``2024-01-01T00:00:00.000+0000``."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:23] + "+0000"


def _engagement_dates(
    hs_id: str, engaged: float, conversions: int, clicks: int, views: int, created: int, now_ms: int
) -> dict[str, str | None]:
    """When a contact last converted, clicked, visited and engaged, as HubSpot's tracking keeps them
    (recent_conversion_date, hs_email_last_click_date, hs_analytics_last_visit_timestamp and
    hs_last_sales_activity_timestamp, "Last Engagement Date": knowledge.hubspot.com, "HubSpot's default
    contact properties"). The more engaged the stage, the more recent. Drawn from a generator of the contact's
    own so the rest of the org stays as it was."""
    rng = random.Random(f"engagement:{hs_id}")

    def recent() -> int:
        days = min(400.0, rng.expovariate(1 / max(4.0, 60.0 / max(engaged, 0.1))))
        return max(created, now_ms - int(days * _DAY_MS) - rng.randrange(60_000, 3_600_000))

    out: dict[str, str | None] = {
        "recent_conversion_date": hs_datetime(recent()) if conversions else None,
        "hs_email_last_click_date": hs_datetime(recent()) if clicks else None,
        "hs_analytics_last_visit_timestamp": hs_datetime(recent()) if views else None,
    }
    dates = [v for v in out.values() if v is not None]
    out["hs_last_sales_activity_timestamp"] = max(dates) if dates else None
    return out


def hs_datetime(ms: int) -> str:
    """HubSpot's wire format for a datetime: ``2024-01-01T00:00:00.000Z``."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:23] + "Z"


def _date(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).date().isoformat()


def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text.replace("ß", "ss").replace("ø", "o").replace("æ", "ae"))
    return "".join(ch for ch in folded if ch.isascii() and (ch.isalnum() or ch in " -'")).strip()


def _slug(company: str) -> str:
    words = [
        w
        for w in _ascii(company.replace(",", " ").replace("&", " ")).lower().replace("'", "").split()
        if w not in _LEGAL_WORDS and w.strip("-")
    ]
    return "-".join(w.strip("-") for w in words[:2]) or "company"


# ------------------------------------------------------------------------------------------- Faker


@functools.cache
def _faker(locale: str) -> Faker:
    # Building a Faker costs ~20 ms per locale; instances are reused and re-seeded before each use.
    return Faker(locale)


class _Names:
    """Person and company names per locale, from Faker seeded per (seed, locale)."""

    def __init__(self, seed: int, rng: random.Random, pool: int) -> None:
        self.seed = seed
        self.rng = rng
        self.pool = pool
        self._fakers: dict[str, Faker] = {}
        self._pools: dict[str, tuple[list[str], list[str]]] = {}

    def faker(self, locale: str) -> Faker:
        fake = self._fakers.get(locale)
        if fake is None:
            fake = _faker(locale)
            fake.seed_instance(f"{self.seed}:{locale}")
            self._fakers[locale] = fake
        return fake

    def person(self, locale: str) -> tuple[str, str]:
        pools = self._pools.get(locale)
        if pools is None:
            fake = self.faker(locale)
            if locale == "ja_JP":
                first_of: Callable[[], str] = fake.first_romanized_name
                last_of: Callable[[], str] = fake.last_romanized_name
            else:
                first_of, last_of = fake.first_name, fake.last_name
            pools = ([first_of() for _ in range(self.pool)], [last_of() for _ in range(self.pool)])
            self._pools[locale] = pools
        return self.rng.choice(pools[0]), self.rng.choice(pools[1])

    def company(self, locale: str) -> str:
        fake = self.faker(locale)
        if locale == "ja_JP":
            return f"{fake.last_romanized_name()} {self.rng.choice(('Systems', 'Holdings', 'Industries', 'Tech'))}"
        return str(fake.company())


# ------------------------------------------------------------------------------------------- the model


@dataclass
class _Account:
    index: int
    name: str
    domain: str
    country: _Country
    city: str
    state: str | None
    industry: str
    employees: int
    revenue: int
    customer: bool
    created: int
    owner: Rep
    sf_id: str | None = None  # None: the company exists only in HubSpot
    hs_id: str | None = None
    linked: bool = False
    open_opportunity: bool = False


@dataclass
class _Summary:
    salesforce: Counter[str] = field(default_factory=Counter)
    hubspot: Counter[str] = field(default_factory=Counter)
    persons: Counter[str] = field(default_factory=Counter)
    mess: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {
            "salesforce": dict(sorted(self.salesforce.items())),
            "hubspot": dict(sorted(self.hubspot.items())),
            "persons": dict(sorted(self.persons.items())),
            "mess": dict(sorted(self.mess.items())),
        }


def _template(fields: Sequence[str]) -> Record:
    return dict.fromkeys(fields)


_SF_TEMPLATES = {name: _template(spec.names) for name, spec in SALESFORCE_OBJECTS.items()}
_MESS_KINDS = (
    "owner_disagrees",
    "lead_owned_by_inactive_rep",
    "duplicate_lead_email",
    "customer_contact_random_owner",
    "lead_in_unassigned_queue",
    "lead_in_emea_queue",
    "email_case_differs",
    "email_whitespace",
    "hubspot_owner_archived",
    "account_owned_by_inactive_rep",
    "hubspot_import_same_timestamp",
    "account_team_member_added_by_human",
    "account_team_member_who_left",
    "tier_set_by_hand",
    "single_threaded_key_account",
)


class _Generator:
    def __init__(self, seed: int, persons: int, now: datetime) -> None:
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware (UTC)")
        self.rng = random.Random(seed)
        self.seed = seed
        self.persons = persons
        self.now_ms = int(now.timestamp() * 1000)
        self.names = _Names(seed, self.rng, pool=max(40, min(600, persons // 20)))
        self.summary = _Summary()
        self.sf_seq: dict[str, int] = {}
        self.hs_seq = 1
        self.sf: dict[str, list[Record]] = {name: [] for name in SALESFORCE_OBJECTS}
        self.hs: dict[str, list[Record]] = {
            "owners": [],
            "contacts": [],
            "companies": [],
            "deals": [],
            "associations": [],
        }
        self.user_id: dict[str, str] = {}  # rep email -> User Id
        self.owner_id: dict[str, str] = {}  # rep email -> HubSpot owner id
        self.rep_of: dict[str, Rep] = {}  # User Id -> rep
        self.hs_user_id: dict[str, int] = {}  # rep email -> HubSpot userId
        self.queue_id: dict[str, str] = {}  # DeveloperName -> Group Id
        self.emails: set[str] = set()
        self.domains: set[str] = set()
        self.accounts: list[_Account] = []
        self.by_role: dict[str, list[Rep]] = {}
        # Pools hold active reps only: an inactive owner appears solely as a counted kind of mess.
        for rep in REPS:
            if not rep.active:
                continue
            self.by_role.setdefault(rep.role, []).append(rep)
            if rep.role == "ae":
                self.by_role.setdefault(f"ae:{rep.territory}", []).append(rep)
        self.active_reps = [r for r in REPS if r.active]
        self.inactive_reps = [r for r in REPS if not r.active]
        self.integration_id = ""

    # -- small draws

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def pick(self, weighted: _Weighted[T]) -> T:
        return weighted.items[bisect.bisect(weighted.cum, self.rng.random() * weighted.total)]

    def next_sf(self, prefix: str) -> str:
        n = self.sf_seq.get(prefix, 1)
        self.sf_seq[prefix] = n + 1
        return sf_id(prefix, n)

    def next_hs(self) -> str:
        n = self.hs_seq
        self.hs_seq += 1
        return str(n)

    def between(self, start: int, end: int) -> int:
        return start if end <= start else self.rng.randint(start, end)

    def stamps(self, created: int) -> tuple[int, int]:
        """(LastModifiedDate, SystemModstamp) for a record created at ``created``, both before now."""
        modified = self.between(created, self.now_ms - 120_000)
        if self.chance(0.3):
            modified = created
        # Automated processes move SystemModstamp without touching LastModifiedDate.
        modstamp = modified + (self.rng.randint(1, 60_000) if self.chance(0.15) else 0)
        return modified, min(modstamp, self.now_ms - 1)

    def sf_system(self, record: Record, created: int, by: str) -> None:
        modified, modstamp = self.stamps(created)
        record["IsDeleted"] = False
        record["CreatedDate"] = sf_datetime(created)
        record["CreatedById"] = by
        record["LastModifiedDate"] = sf_datetime(modified)
        record["LastModifiedById"] = self.rng.choice((by, self.integration_id)) if modified > created else by
        record["SystemModstamp"] = sf_datetime(modstamp)

    def email(self, first: str, last: str, domain: str) -> str:
        f, la = _ascii(first).lower().replace(" ", ""), _ascii(last).lower().replace(" ", "").replace("'", "")
        f, la = f or "info", la or "contact"
        candidates = [f"{f}.{la}", f"{f[0]}{la}", f"{f}{la[0]}", f"{f}_{la}"]
        for local in candidates:
            address = f"{local}@{domain}"
            if address not in self.emails:
                self.emails.add(address)
                return address
        while True:
            address = f"{f}.{la}{self.rng.randint(2, 9999)}@{domain}"
            if address not in self.emails:
                self.emails.add(address)
                return address

    def phone(self, country: _Country) -> str:
        return f"{country.phone} {self.rng.randint(20, 989)} {self.rng.randint(100, 999)} {self.rng.randint(1000, 9999)}"

    # -- the org

    def org(self) -> None:
        base = self.now_ms - 3 * 365 * _DAY_MS
        integration = dict(_SF_TEMPLATES["User"])
        self.integration_id = self.next_sf("005")
        integration.update(
            Id=self.integration_id,
            Username=INTEGRATION_EMAIL,
            Email=INTEGRATION_EMAIL,
            FirstName="syncd",
            LastName="Integration",
            Name="syncd Integration",
            IsActive=True,
            Title="Integration User",
            Department="IT",
            UserType="Standard",
        )
        self.sf_fixed_system(integration, base, self.integration_id)
        self.sf["User"].append(integration)
        for i, rep in enumerate(REPS):
            user_id = self.next_sf("005")
            self.user_id[rep.email] = user_id
            self.rep_of[user_id] = rep
            created = base + (i + 1) * 7 * _DAY_MS
            user = dict(_SF_TEMPLATES["User"])
            user.update(
                Id=user_id,
                Username=rep.email,
                Email=rep.email,
                FirstName=rep.first,
                LastName=rep.last,
                Name=f"{rep.first} {rep.last}",
                IsActive=rep.active,
                Title=rep.title,
                Department=_DEPARTMENTS[rep.team],
                UserType="Standard",
            )
            self.sf_fixed_system(user, created, self.integration_id)
            self.sf["User"].append(user)
            owner_id = str(41_000_101 + i * 7)
            self.owner_id[rep.email] = owner_id
            self.hs_user_id[rep.email] = 7_100_001 + i
            team_key = f"ae:{rep.territory}" if rep.role == "ae" else rep.role
            team_id = str(5_200_000 + sorted(_HS_TEAMS).index(team_key))
            updated = created if rep.active else self.now_ms - self.rng.randint(20, 200) * _DAY_MS
            self.hs["owners"].append(
                {
                    "id": owner_id,
                    "email": rep.email,
                    "firstName": rep.first,
                    "lastName": rep.last,
                    "userId": self.hs_user_id[rep.email],
                    "type": "PERSON",
                    "createdAt": hs_datetime(created),
                    "updatedAt": hs_datetime(updated),
                    "archived": not rep.active,
                    "teams": [{"id": team_id, "name": _HS_TEAMS[team_key], "primary": True}],
                }
            )
        for name, developer_name in QUEUES:
            queue = dict(_SF_TEMPLATES["Group"])
            queue_id = self.next_sf("00G")
            self.queue_id[developer_name] = queue_id
            queue.update(Id=queue_id, Name=name, DeveloperName=developer_name, Type="Queue", Email=None)
            self.sf_fixed_system(queue, base + _DAY_MS, self.integration_id)
            self.sf["Group"].append(queue)

    def sf_fixed_system(self, record: Record, created: int, by: str) -> None:
        stamp = sf_datetime(created)
        record.update(
            IsDeleted=False,
            CreatedDate=stamp,
            CreatedById=by,
            LastModifiedDate=stamp,
            LastModifiedById=by,
            SystemModstamp=stamp,
        )

    # -- accounts, companies, opportunities, deals

    def ae_for(self, country: _Country) -> Rep:
        territory = _TERRITORY_OF.get(country.code)
        pool = self.by_role[f"ae:{territory}"] if territory else self.by_role["ae"]
        return self.rng.choice(pool)

    def new_account(self, index: int, in_salesforce: bool) -> _Account:
        country = self.pick(_COUNTRY_W)
        locale = country.locale if self.chance(0.85) else "en_US"
        for _ in range(4):
            name = self.names.company(locale)
            domain = f"{_slug(name)}.{country.tld}"
            if domain not in self.domains:
                break
        else:
            domain = f"{_slug(name)}{self.rng.randint(2, 999)}.{country.tld}"
        self.domains.add(domain)
        low, high = self.pick(_SIZE_W)
        employees = self.rng.randint(low, high)
        revenue = round(employees * self.rng.randint(60, 320) * 1000, -3)
        customer = in_salesforce and self.chance(0.25)
        city, state = self.rng.choice(country.cities)
        owner = self.rng.choice(self.by_role["account_manager"]) if customer else self.ae_for(country)
        created = self.now_ms - self.rng.randint(60, 730) * _DAY_MS - self.rng.randint(0, _DAY_MS)
        return _Account(
            index,
            name,
            domain,
            country,
            city,
            state,
            self.pick(_INDUSTRY_W),
            employees,
            int(revenue),
            customer,
            created,
            owner,
        )

    def accounts_and_companies(self) -> None:
        n_accounts = 0 if self.persons == 0 else max(1, self.persons // 8)
        n_hs_only = 0 if self.persons == 0 else max(1, self.persons // 100)
        for i in range(n_accounts + n_hs_only):
            acct = self.new_account(i, in_salesforce=i < n_accounts)
            self.accounts.append(acct)
            if i < n_accounts:
                self.sf_account(acct)
            if i >= n_accounts or self.chance(0.85):
                self.hs_company(acct)
        for acct in self.accounts:
            if acct.sf_id is not None:
                self.opportunities(acct)

    def sf_account(self, acct: _Account) -> None:
        acct.sf_id = self.next_sf("001")
        record = dict(_SF_TEMPLATES["Account"])
        owner = acct.owner
        if not acct.customer and self.chance(0.04):
            owner = self.rng.choice(self.inactive_reps)
            self.summary.mess["account_owned_by_inactive_rep"] += 1
        record.update(
            Id=acct.sf_id,
            Name=acct.name,
            Website=f"https://www.{acct.domain}",
            Industry=acct.industry,
            NumberOfEmployees=acct.employees,
            AnnualRevenue=acct.revenue,
            Type="Customer" if acct.customer else "Prospect",
            BillingCountry=acct.country.code,
            BillingState=acct.state,
            BillingCity=acct.city,
            Phone=self.phone(acct.country),
            OwnerId=self.user_id[owner.email],
        )
        self.sf_system(record, acct.created, self.user_id[acct.owner.email])
        self.sf["Account"].append(record)

    def hs_company(self, acct: _Account) -> None:
        acct.hs_id = self.next_hs()
        acct.linked = acct.sf_id is not None and self.chance(0.55)
        owner: Rep | None = acct.owner
        if acct.sf_id is None:
            owner = self.rng.choice(self.by_role["marketing"]) if self.chance(0.5) else None
        elif self.chance(0.10):
            owner = self.rng.choice(self.active_reps)
            self.summary.mess["owner_disagrees"] += 1
        created = acct.created + self.rng.randint(-30, 30) * _DAY_MS
        created = min(created, self.now_ms - _DAY_MS)
        modified, _ = self.stamps(created)
        # HubSpot shows the name as typed in by whoever created it: legal suffixes often missing.
        name = acct.name if self.chance(0.7) else acct.name.split(",")[0].split(" & ")[0]
        stage = "customer" if acct.customer else ("lead" if acct.sf_id is None else "opportunity")
        props = {
            "hs_object_id": acct.hs_id,
            "createdate": hs_datetime(created),
            "hs_lastmodifieddate": hs_datetime(modified),
            "name": name,
            "domain": acct.domain,
            "website": f"https://www.{acct.domain}" if self.chance(0.8) else None,
            "industry": acct.industry if self.chance(0.8) else None,
            "numberofemployees": str(acct.employees) if self.chance(0.85) else None,
            "annualrevenue": str(acct.revenue) if self.chance(0.6) else None,
            "country": acct.country.code,
            "state": acct.state,
            "city": acct.city,
            "lifecyclestage": stage,
            "hubspot_owner_id": self.owner_id[owner.email] if owner else None,
            "syncd_salesforce_id": acct.sf_id if acct.linked else None,
        }
        self.hs["companies"].append(_hs_object(acct.hs_id, props, created, modified))
        if acct.linked:
            self.sf["Account"][-1]["Syncd_HubSpot_Id__c"] = acct.hs_id

    def opportunities(self, acct: _Account) -> None:
        plans: list[str] = []
        if acct.customer:
            plans += ["Closed Won"] * self.rng.randint(1, 3)
            if self.chance(0.2):
                plans.append(self.rng.choice(_OPEN_STAGES))
        else:
            if self.chance(0.3):
                plans.append(self.rng.choice(_OPEN_STAGES))
            if self.chance(0.1):
                plans.append("Closed Lost")
        for n, stage in enumerate(plans):
            closed = stage.startswith("Closed")
            acct.open_opportunity |= not closed
            opp_id = self.next_sf("006")
            created = self.between(acct.created, self.now_ms - 40 * _DAY_MS)
            close = (
                self.between(created + 14 * _DAY_MS, self.now_ms - _DAY_MS)
                if closed
                else self.now_ms + self.rng.randint(5, 150) * _DAY_MS
            )
            amount = round(max(5_000, acct.employees * self.rng.randint(40, 400)), -2)
            owner = acct.owner if acct.customer and n > 0 else self.ae_for(acct.country)
            record = dict(_SF_TEMPLATES["Opportunity"])
            record.update(
                Id=opp_id,
                AccountId=acct.sf_id,
                Name=f"{acct.name} - {self.rng.choice(_PRODUCTS)}",
                StageName=stage,
                Amount=float(amount),
                CloseDate=_date(close),
                Type="Existing Business" if acct.customer and n > 0 else "New Business",
                IsClosed=closed,
                IsWon=stage == "Closed Won",
                OwnerId=self.user_id[owner.email],
            )
            self.sf_system(record, created, self.user_id[owner.email])
            self.sf["Opportunity"].append(record)
            if acct.hs_id is not None and self.chance(0.6):
                self.hs_deal(acct, record, owner, created, close)

    def hs_deal(self, acct: _Account, opp: Record, owner: Rep, created: int, close: int) -> None:
        deal_id = self.next_hs()
        linked = self.chance(0.5)
        modified, _ = self.stamps(created)
        props = {
            "hs_object_id": deal_id,
            "createdate": hs_datetime(created),
            "hs_lastmodifieddate": hs_datetime(modified),
            "dealname": opp["Name"],
            "amount": f"{opp['Amount']:.0f}",
            "dealstage": _DEAL_STAGE[opp["StageName"]],
            "pipeline": "default",
            "closedate": hs_datetime(close),
            "hubspot_owner_id": self.owner_id[owner.email],
            "syncd_salesforce_id": opp["Id"] if linked else None,
        }
        self.hs["deals"].append(_hs_object(deal_id, props, created, modified))
        if linked:
            opp["Syncd_HubSpot_Id__c"] = deal_id
        self.associate("deals", deal_id, acct.hs_id or "", DEAL_TO_COMPANY)

    def hubspot_only_deals(self) -> None:
        """Deals of HubSpot-only companies (no Salesforce account): marketing-sourced pipeline that only
        HubSpot knows, half of those companies with one or two open or recently closed deals.

        A separate random stream (seeded from the org's seed), run after everything else, so adding these
        leaves every other record of a seed as it was.
        """
        rng = random.Random(f"hubspot-only-deals:{self.seed}")
        stages = (
            *("appointmentscheduled", "qualifiedtobuy", "presentationscheduled") * 3,
            "closedwon",
            "closedlost",
        )
        for acct in self.accounts:
            if acct.sf_id is not None or acct.hs_id is None or rng.random() >= 0.5:
                continue
            for _ in range(rng.randint(1, 2)):
                deal_id = self.next_hs()
                created = min(acct.created + rng.randint(5, 400) * _DAY_MS, self.now_ms - _DAY_MS)
                modified = min(created + rng.randint(0, 60) * _DAY_MS, self.now_ms - 60_000)
                stage = rng.choice(stages)
                closed = stage in ("closedwon", "closedlost")
                close = modified if closed else self.now_ms + rng.randint(10, 120) * _DAY_MS
                owner = acct.owner if rng.random() < 0.7 else rng.choice(self.active_reps)
                props = {
                    "hs_object_id": deal_id,
                    "createdate": hs_datetime(created),
                    "hs_lastmodifieddate": hs_datetime(modified),
                    "dealname": f"{acct.name} - {rng.choice(_PRODUCTS)}",
                    "amount": str(rng.randint(4, 120) * 1000),
                    "dealstage": stage,
                    "pipeline": "default",
                    "closedate": hs_datetime(close),
                    "hubspot_owner_id": self.owner_id[owner.email],
                    "syncd_salesforce_id": None,
                }
                self.hs["deals"].append(_hs_object(deal_id, props, created, modified))
                self.associate("deals", deal_id, acct.hs_id, DEAL_TO_COMPANY)

    def associate(self, from_type: str, from_id: str, company_id: str, type_id: int) -> None:
        self.hs["associations"].append(
            {
                "id": f"{from_type}:{from_id}:companies:{company_id}",
                "from_type": from_type,
                "from_id": from_id,
                "to_type": "companies",
                "to_id": company_id,
                "type_id": type_id,
            }
        )

    # -- persons

    def person(self) -> None:
        acct = self.rng.choice(self.accounts) if self.accounts and self.chance(0.9) else None
        country = acct.country if acct else self.pick(_COUNTRY_W)
        locale = country.locale if self.chance(0.8) else "en_US"
        first, last = self.names.person(locale)
        domain = acct.domain if acct else self.rng.choice(_FREE_MAIL)
        email = self.email(first, last, domain)
        kind = self.person_kind(acct)
        self.summary.persons[kind] += 1
        stage = self.stage_for(kind, acct)
        title = self.pick(_TITLE_W) if self.chance(0.85) else None
        city, state = (acct.city, acct.state) if acct else self.rng.choice(country.cities)
        person = _Person(first, last, email, country, city, state, title, acct, stage, self.phone(country))
        intended = self.intended_owner(stage, country, acct)
        hs_created = self.between(
            acct.created if acct else self.now_ms - 730 * _DAY_MS, self.now_ms - 3 * _DAY_MS
        )
        hs_id: str | None = None
        if kind != "salesforce_only_lead" and kind != "salesforce_only_contact":
            hs_id = self.next_hs()
        sf_records: list[Record] = []
        if kind in ("linked_lead", "email_only_lead", "salesforce_only_lead"):
            sf_records.append(self.sf_lead(person, self.lead_owner(intended, country), hs_created, kind))
        elif acct is not None and kind in ("linked_contact", "email_only_contact", "salesforce_only_contact"):
            sf_records.extend(self.sf_contact(person, acct, hs_created, kind))
        linked = kind.startswith("linked_")
        if linked and hs_id is not None:
            sf_records[-1]["Syncd_HubSpot_Id__c"] = hs_id
            if len(sf_records) == 2:  # the converted Lead kept the id it carried before conversion
                sf_records[0]["Syncd_HubSpot_Id__c"] = hs_id
        if kind.startswith("email_only_"):
            self.vary_email(sf_records[-1])
        if hs_id is not None:
            sf_owner = sf_records[-1]["OwnerId"] if sf_records else None
            self.hs_contact(
                hs_id, person, intended, hs_created, sf_records[-1]["Id"] if linked else None, sf_owner
            )
        if sf_records and sf_records[-1]["Id"].startswith("00Q") and self.chance(0.015):
            self.duplicate_lead(sf_records[-1], person)

    def person_kind(self, acct: _Account | None) -> str:
        roll = self.rng.random()
        if acct is not None and acct.sf_id is not None:
            converted_share = 0.55 if acct.customer or acct.open_opportunity else 0.18
        else:
            converted_share = 0.0
        if roll < converted_share:
            return self.pick(_CONTACT_KIND_W)
        roll = self.rng.random()
        if roll < 0.40:
            return "hubspot_only"
        if roll < 0.93:
            return "linked_lead" if self.chance(0.6) else "email_only_lead"
        return "salesforce_only_lead"

    def stage_for(self, kind: str, acct: _Account | None) -> str:
        if kind == "hubspot_only":
            return self.pick(_HS_ONLY_STAGE_W)
        if kind.endswith("_lead"):
            return self.pick(_LEAD_STAGE_W)
        if acct is not None and acct.customer:
            return "customer"
        if acct is not None and acct.open_opportunity:
            return "opportunity"
        return "salesqualifiedlead"

    def intended_owner(self, stage: str, country: _Country, acct: _Account | None) -> Rep | None:
        """The rep a sensible admin would have picked by hand: the pre-syncd state of the org."""
        if stage in ("subscriber", "lead"):
            return self.rng.choice(self.by_role["marketing"]) if self.chance(0.7) else None
        if stage == "marketingqualifiedlead":
            return self.rng.choice(self.by_role["sdr"])
        if stage in ("salesqualifiedlead", "opportunity"):
            return self.ae_for(country)
        if acct is not None and self.chance(0.8):
            return acct.owner
        return self.rng.choice(self.by_role["csm"])

    def lead_owner(self, intended: Rep | None, country: _Country) -> str:
        if self.chance(0.06):
            self.summary.mess["lead_in_unassigned_queue"] += 1
            return self.queue_id["Unassigned_Leads"]
        if _TERRITORY_OF.get(country.code) == "EMEA" and self.chance(0.05):
            self.summary.mess["lead_in_emea_queue"] += 1
            return self.queue_id["EMEA_Lead_Queue"]
        if self.chance(0.04):
            self.summary.mess["lead_owned_by_inactive_rep"] += 1
            return self.user_id[self.rng.choice(self.inactive_reps).email]
        # A Salesforce Lead always has an owner: the marketing team's when nobody picked one.
        return self.user_id[(intended or self.rng.choice(self.by_role["marketing"])).email]

    def sf_lead(self, p: _Person, owner_id: str, hs_created: int, kind: str) -> Record:
        lead = dict(_SF_TEMPLATES["Lead"])
        created = (
            self.between(hs_created, hs_created + 30 * _DAY_MS)
            if kind != "salesforce_only_lead"
            else hs_created
        )
        # A Lead converted later needs room for its conversion before now.
        created = min(created, self.now_ms - (3 if kind == "converted" else 1) * _DAY_MS)
        status = _STATUS_FOR_STAGE.get(p.stage, "Open - Not Contacted")
        if kind == "salesforce_only_lead":
            status = self.pick(_SF_ONLY_STATUS_W)
        elif self.chance(0.1):
            status = self.rng.choice(("Open - Not Contacted", "Working - Contacted", "Nurturing"))
        acct = p.account
        lead.update(
            Id=self.next_sf("00Q"),
            FirstName=p.first,
            LastName=p.last,
            Name=f"{p.first} {p.last}",
            Email=p.email,
            Company=acct.name if acct else "[not provided]",
            Title=p.title,
            Phone=p.phone if self.chance(0.6) else None,
            Website=f"https://www.{acct.domain}" if acct and self.chance(0.5) else None,
            Country=p.country.code,
            State=p.state,
            City=p.city,
            Industry=acct.industry if acct and self.chance(0.6) else None,
            NumberOfEmployees=acct.employees if acct and self.chance(0.5) else None,
            AnnualRevenue=float(acct.revenue) if acct and self.chance(0.3) else None,
            LeadSource=self.pick(_LEAD_SOURCE_W),
            Status=status,
            Rating=self.rng.choice(("Hot", "Warm", "Cold", None)),
            OwnerId=owner_id,
            IsConverted=False,
        )
        # Leads that came from HubSpot were created by the integration; others by their owner.
        by = self.integration_id
        if kind == "salesforce_only_lead" and lead["OwnerId"].startswith("005"):
            by = lead["OwnerId"]
        self.sf_system(lead, created, by)
        self.sf["Lead"].append(lead)
        return lead

    def sf_contact(self, p: _Person, acct: _Account, hs_created: int, kind: str) -> list[Record]:
        """A Salesforce Contact under its Account: converted from a Lead, or entered by sales directly."""
        lead: Record | None = None
        if kind == "salesforce_only_contact":
            converted = self.between(hs_created, self.now_ms - 2 * _DAY_MS)
        else:
            lead = self.sf_lead(p, self.user_id[acct.owner.email], hs_created, "converted")
            converted = self.between(_parse_sf(lead["CreatedDate"]) + _DAY_MS, self.now_ms - 2 * _DAY_MS)
        owner = self.user_id[acct.owner.email]
        if acct.customer and self.chance(0.2):
            owner = self.user_id[self.rng.choice([r for r in self.active_reps if r is not acct.owner]).email]
            self.summary.mess["customer_contact_random_owner"] += 1
        contact = dict(_SF_TEMPLATES["Contact"])
        contact.update(
            Id=self.next_sf("003"),
            AccountId=acct.sf_id,
            FirstName=p.first,
            LastName=p.last,
            Name=f"{p.first} {p.last}",
            Email=p.email,
            Title=p.title,
            Phone=p.phone if self.chance(0.6) else None,
            MailingCountry=p.country.code,
            MailingState=p.state,
            MailingCity=p.city,
            LeadSource=lead["LeadSource"] if lead else "Other",
            OwnerId=owner,
        )
        self.sf_system(contact, converted, self.user_id[acct.owner.email])
        self.sf["Contact"].append(contact)
        if lead is None:
            return [contact]
        # Conversion hands the Lead to the account's owner and freezes it: converted Leads are read-only.
        stamp = sf_datetime(converted)
        lead.update(
            IsConverted=True,
            ConvertedDate=_date(converted),
            Status="Closed - Converted",
            ConvertedAccountId=acct.sf_id,
            ConvertedContactId=contact["Id"],
            OwnerId=self.user_id[acct.owner.email],
            LastModifiedDate=stamp,
            SystemModstamp=stamp,
            LastModifiedById=self.user_id[acct.owner.email],
        )
        return [lead, contact]

    def vary_email(self, record: Record) -> None:
        email = record["Email"]
        if self.chance(0.3):
            local, _, domain = email.partition("@")
            record["Email"] = f"{local.title()}@{domain}" if self.chance(0.7) else email.upper()
            if record["Email"] != email:
                self.summary.mess["email_case_differs"] += 1
        elif self.chance(0.06):
            record["Email"] = f" {email} " if self.chance(0.5) else f"{email} "
            self.summary.mess["email_whitespace"] += 1

    def hs_contact(
        self,
        hs_id: str,
        p: _Person,
        intended: Rep | None,
        created: int,
        sf_id: str | None,
        sf_owner: str | None,
    ) -> None:
        # Both systems start from the same owner; then the drift a year of manual edits leaves behind.
        owner = self.rep_of.get(sf_owner or "", intended)
        if owner is not None and not owner.active and self.chance(0.5):
            owner = intended  # reassigned in HubSpot only, still the departed rep's in Salesforce
        elif owner is not None and self.chance(0.02):
            owner = self.rng.choice(self.inactive_reps)
        elif sf_owner is not None and owner is not None and self.chance(0.12):
            owner = self.rng.choice([r for r in self.active_reps if self.user_id[r.email] != sf_owner])
        if (
            owner is not None
            and sf_owner is not None
            and sf_owner.startswith("005")
            and self.user_id[owner.email] != sf_owner
        ):
            self.summary.mess["owner_disagrees"] += 1
        if owner is not None and not owner.active:
            self.summary.mess["hubspot_owner_archived"] += 1
        imported = p.stage in ("subscriber", "lead") and sf_id is None and self.chance(0.08)
        if imported:
            # A list import: every row gets the same timestamps, down to the millisecond.
            created = modified = self.now_ms - 200 * _DAY_MS + 123
            self.summary.mess["hubspot_import_same_timestamp"] += 1
        else:
            modified, _ = self.stamps(created)
        engaged = {
            "subscriber": 0.3,
            "lead": 1.0,
            "marketingqualifiedlead": 2.5,
            "salesqualifiedlead": 3.0,
            "opportunity": 3.0,
            "customer": 2.0,
        }[p.stage]
        conversions = int(self.rng.expovariate(1 / engaged)) if engaged else 0
        clicks = int(self.rng.expovariate(1 / (engaged * 3)))
        views = int(self.rng.expovariate(1 / (engaged * 12))) + conversions
        last_note = (
            self.between(max(created, self.now_ms - 240 * _DAY_MS), self.now_ms - 60_000)
            if self.chance(min(0.9, 0.15 * engaged + 0.1))
            else None
        )
        engagement_dates = _engagement_dates(hs_id, engaged, conversions, clicks, views, created, self.now_ms)
        acct = p.account
        props = {
            "hs_object_id": hs_id,
            "createdate": hs_datetime(created),
            "lastmodifieddate": hs_datetime(modified),
            "email": p.email,
            "firstname": p.first,
            "lastname": p.last,
            "company": acct.name if acct else None,
            "jobtitle": p.title,
            "phone": p.phone if self.chance(0.4) else None,
            "website": f"https://www.{acct.domain}" if acct and self.chance(0.4) else None,
            "country": p.country.code if self.chance(0.9) else None,
            "state": p.state,
            "city": p.city,
            "industry": acct.industry if acct and self.chance(0.4) else None,
            "numemployees": str(acct.employees) if acct and self.chance(0.3) else None,
            "lifecyclestage": p.stage,
            "hs_lead_status": self.rng.choice(_HS_LEAD_STATUS[p.stage]),
            "hubspot_owner_id": self.owner_id[owner.email] if owner else None,
            "hubspotscore": str(min(100, conversions * 8 + clicks * 2 + views // 5)),
            "num_conversion_events": str(conversions),
            "hs_email_click": str(clicks),
            "hs_analytics_num_page_views": str(views),
            "notes_last_updated": hs_datetime(last_note) if last_note is not None else None,
            **engagement_dates,
            "hs_analytics_source": self.pick(_HS_SOURCE_W),
            "syncd_salesforce_id": sf_id,
        }
        if not imported and owner is not None and modified > created and self.chance(0.5):
            props["hs_updated_by_user_id"] = str(self.hs_user_id[owner.email])
        self.hs["contacts"].append(_hs_object(hs_id, props, created, modified))
        if acct is not None and acct.hs_id is not None:
            self.associate("contacts", hs_id, acct.hs_id, CONTACT_TO_COMPANY)

    def duplicate_lead(self, original: Record, p: _Person) -> None:
        """A second Lead with the same email: a rep typed it in again from a business card."""
        dup = dict(original)
        created = self.between(_parse_sf(original["CreatedDate"]), self.now_ms - _DAY_MS)
        owner = self.rng.choice([r for r in self.active_reps if self.user_id[r.email] != original["OwnerId"]])
        dup.update(
            Id=self.next_sf("00Q"),
            Email=original["Email"].strip().lower()
            if self.chance(0.5)
            else original["Email"].strip().upper(),
            Status="Open - Not Contacted",
            LeadSource="Trade Show",
            OwnerId=self.user_id[owner.email],
            Syncd_HubSpot_Id__c=None,
            Phone=p.phone,
            Title=p.title if self.chance(0.5) else None,
        )
        self.sf_system(dup, created, self.user_id[owner.email])
        self.sf["Lead"].append(dup)
        self.summary.mess["duplicate_lead_email"] += 1

    # -- writing

    def write(self, store_sf: Store, store_hs: Store) -> None:
        with store_sf.lock:
            for type_, records in self.sf.items():
                for start in range(0, len(records), _CHUNK):
                    store_sf.put_many(type_, records[start : start + _CHUNK])
                self.summary.salesforce[type_] = len(records)
            store_sf.set_meta("sf_seq", dict(self.sf_seq))
        with store_hs.lock:
            for type_, records in self.hs.items():
                for start in range(0, len(records), _CHUNK):
                    store_hs.put_many(type_, records[start : start + _CHUNK])
                self.summary.hubspot[type_] = len(records)
            store_hs.set_meta("hs_seq", self.hs_seq)


@dataclass
class _Person:
    first: str
    last: str
    email: str
    country: _Country
    city: str
    state: str | None
    title: str | None
    account: _Account | None
    stage: str
    phone: str


def _hs_object(id_: str, props: dict[str, str | None], created: int, modified: int) -> Record:
    return {
        "id": id_,
        "properties": props,
        "createdAt": hs_datetime(created),
        "updatedAt": hs_datetime(modified),
        "archived": False,
        "archivedAt": None,
    }


def _parse_sf(value: str) -> int:
    return int(datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp() * 1000)


# ------------------------------------------------------------------------------------------- account teams

# Roles syncd's default teams.toml uses, and what an integration that managed teams before would have left.
_SYNCD_TEAM_ROLES = (
    "Account Executive",
    "Account Manager",
    "Customer Success Manager",
    "Sales Development Rep",
)
_TIERS = ("Strategic", "Enterprise", "Mid-Market", "SMB")
KEY_ACCOUNTS = 5  # the largest customers by revenue, left single-threaded: one rep for everything


def _key_accounts(gen: _Generator) -> list[_Account]:
    customers = [a for a in gen.accounts if a.customer and a.sf_id is not None]
    return sorted(customers, key=lambda a: (-a.revenue, a.index))[:KEY_ACCOUNTS]


def _seed_single_threaded(gen: _Generator, keys: list[_Account]) -> None:
    """The key accounts hang on one rep: their owner owns every contact and opportunity, in both systems."""
    by_account = {a.sf_id: a for a in keys}
    owner_of = {a.sf_id: gen.user_id[a.owner.email] for a in keys}
    moved: set[str] = set()
    for contact in gen.sf["Contact"]:
        owner = owner_of.get(contact["AccountId"])
        if owner is not None and contact["OwnerId"] != owner:
            contact["OwnerId"] = owner
            moved.add(contact["Id"])
            gen.summary.mess["customer_contact_random_owner"] -= 1
    for opportunity in gen.sf["Opportunity"]:
        owner = owner_of.get(opportunity["AccountId"])
        if owner is not None:
            opportunity["OwnerId"] = owner
    contact_account = {c["Id"]: c["AccountId"] for c in gen.sf["Contact"]}
    hs_owner = {a.sf_id: gen.owner_id[a.owner.email] for a in keys}
    company_ids = {a.hs_id: a.sf_id for a in keys if a.hs_id}
    for company in gen.hs["companies"]:
        account_id = company_ids.get(company["id"])
        if account_id is not None:
            company["properties"]["hubspot_owner_id"] = hs_owner[account_id]
    for contact in gen.hs["contacts"]:
        account_id = contact_account.get(contact["properties"].get("syncd_salesforce_id") or "")
        if account_id in hs_owner:
            contact["properties"]["hubspot_owner_id"] = hs_owner[account_id]
    gen.summary.mess["single_threaded_key_account"] = len(by_account)


def _seed_account_teams(gen: _Generator, rng: random.Random, keys: list[_Account]) -> None:
    """Teams on some other accounts, as an org has them: members an earlier integration added (with syncd's
    roles), members the owner added by hand (any role), and now and then a member who has since left."""
    skip = {a.sf_id for a in keys}
    spec = SALESFORCE_OBJECTS["AccountTeamMember"]
    titles = {u["Id"]: u.get("Title") for u in gen.sf["User"]}
    for acct in gen.accounts:
        if acct.sf_id is None or acct.sf_id in skip or rng.random() > 0.4:
            continue
        owner = gen.user_id[acct.owner.email]
        chosen: set[str] = {owner}
        for _ in range(rng.randint(1, 3)):
            left = rng.random() < 0.1
            rep = rng.choice(gen.inactive_reps if left else gen.active_reps)
            user = gen.user_id[rep.email]
            if user in chosen:
                continue
            chosen.add(user)
            human = rng.random() < 0.5
            by = owner if human else gen.integration_id
            stamp = sf_datetime(rng.randint(acct.created, gen.now_ms - _DAY_MS))
            member = dict(_SF_TEMPLATES["AccountTeamMember"])
            member.update(
                Id=gen.next_sf(spec.key_prefix),
                IsDeleted=False,
                AccountId=acct.sf_id,
                UserId=user,
                TeamMemberRole=rng.choice(TEAM_MEMBER_ROLES if human else _SYNCD_TEAM_ROLES),
                AccountAccessLevel=rng.choice(("Read", "Edit")),
                OpportunityAccessLevel=rng.choice(RELATED_ACCESS_LEVELS),
                CaseAccessLevel=rng.choice(RELATED_ACCESS_LEVELS),
                ContactAccessLevel="Read",
                Title=titles.get(user),
                CreatedDate=stamp,
                CreatedById=by,
                LastModifiedDate=stamp,
                LastModifiedById=by,
                SystemModstamp=stamp,
            )
            gen.sf["AccountTeamMember"].append(member)
            gen.summary.mess["account_team_member_added_by_human"] += human
            gen.summary.mess["account_team_member_who_left"] += left


def _seed_tiers(gen: _Generator, rng: random.Random) -> None:
    """Tiers set by hand some time ago: on some accounts and companies, often not what the rules would say,
    and not always the same in both systems."""
    accounts = {a["Id"]: a for a in gen.sf["Account"]}
    companies = {c["id"]: c for c in gen.hs["companies"]}
    for acct in gen.accounts:
        tier = rng.choice(_TIERS)
        record = accounts.get(acct.sf_id or "")
        if record is not None and rng.random() < 0.4:
            record["Syncd_Tier__c"] = tier
            gen.summary.mess["tier_set_by_hand"] += 1
        if acct.hs_id is not None and rng.random() < 0.3:
            companies[acct.hs_id]["properties"]["syncd_tier"] = (
                tier if rng.random() < 0.7 else rng.choice(_TIERS)
            )


def _seed_teams_and_tiers(gen: _Generator, seed: int) -> None:
    # An rng of their own: the rest of the org is the same with or without them.
    rng = random.Random(f"account-teams-{seed}")
    keys = _key_accounts(gen)
    _seed_single_threaded(gen, keys)
    _seed_account_teams(gen, rng, keys)
    _seed_tiers(gen, rng)


def generate(
    store_sf: Store,
    store_hs: Store,
    *,
    seed: int,
    persons: int,
    now: datetime,
    progress: Progress = NULL,
) -> dict[str, Any]:
    """Fill two empty stores with the Northwind org and ``persons`` persons; returns counts for a summary.

    Deterministic: the same seed, persons and now give identical records. ``now`` (timezone-aware) is the
    moment the org is seen at: every timestamp lies in the two years before it, open opportunities close
    after it. ``progress`` hears of the persons generated (stage "seed") and the write (stage "write").
    """
    if persons < 0:
        raise ValueError("persons must be >= 0")
    gen = _Generator(seed, persons, now)
    gen.org()
    gen.accounts_and_companies()
    progress.stage("seed", total=persons)
    for n in range(1, persons + 1):
        gen.person()
        if n % _PROGRESS_EVERY == 0:
            progress.advance(_PROGRESS_EVERY)
    progress.advance(persons % _PROGRESS_EVERY)
    gen.hubspot_only_deals()
    _seed_teams_and_tiers(gen, seed)
    progress.stage("write")
    gen.write(store_sf, store_hs)
    progress.finish()
    for kind in _MESS_KINDS:
        gen.summary.mess.setdefault(kind, 0)
    return gen.summary.as_dict()
