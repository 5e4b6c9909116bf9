"""The systems' static facts: which objects syncd pulls, their owner fields, write limits, field metadata.

Pure data, no I/O: the core, the connectors and the sandbox import it (never the reverse). The field
metadata below is also the sandbox's "org metadata": standard fields as the real systems have them (the subset syncd and
its tests use), plus the custom fields and properties syncd needs, which a real admin creates once
(see README, "Connecting real systems"). Extra custom fields can be declared per sandbox.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

System = Literal["salesforce", "hubspot"]
SYSTEMS: tuple[System, ...] = ("salesforce", "hubspot")
"""Both systems, in the order a cycle works on them (Salesforce first: its creates queue HubSpot updates)."""

# The most records one write request takes: sObject Collections 200, HubSpot batch endpoints 100.
WRITE_BATCH_LIMIT: dict[str, int] = {"salesforce": 200, "hubspot": 100}

# Objects syncd pulls, per system, in the order a cycle pulls them. Deals and opportunities are linked to
# their account: a HubSpot-only company counts its open and won deals like Salesforce opportunities, and a
# deal's owner follows its account's (policy.toml [accounts] deal_owner).
PULLED: dict[str, tuple[str, ...]] = {
    "salesforce": ("Account", "Contact", "Lead", "Opportunity"),
    "hubspot": ("companies", "contacts", "deals"),
}
PERSON_OBJECTS: dict[str, tuple[str, ...]] = {"salesforce": ("Contact", "Lead"), "hubspot": ("contacts",)}
ACCOUNT_OBJECTS: dict[str, tuple[str, ...]] = {"salesforce": ("Account",), "hubspot": ("companies",)}
OWNER_FIELD: dict[str, str] = {"salesforce": "OwnerId", "hubspot": "hubspot_owner_id"}
# Who made the last change: a Salesforce User id, a HubSpot user id (an owner's userId).
CHANGED_BY_FIELD: dict[str, str] = {"salesforce": "LastModifiedById", "hubspot": "hs_updated_by_user_id"}

FieldType = Literal[
    "id",
    "reference",
    "string",
    "email",
    "url",
    "phone",
    "picklist",
    "textarea",
    "int",
    "double",
    "currency",
    "boolean",
    "date",
    "datetime",
]


# An e-mail address Salesforce accepts in an email field: a local part of RFC 5322 atom characters and dots,
# a hostname domain with at least one dot; control characters, spaces and a second "@" are refused with
# INVALID_EMAIL_ADDRESS (SOAP API Developer Guide, "Field Types", email; Object Reference, Lead.Email).
SALESFORCE_EMAIL = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+$"
)


@dataclass(frozen=True)
class FieldSpec:
    """One field of a Salesforce sObject or one property of a HubSpot object."""

    name: str
    type: FieldType = "string"
    required: bool = False  # Salesforce: REQUIRED_FIELD_MISSING on create when absent or blank
    readonly: bool = False  # system or computed fields: writes are rejected
    external_id: bool = False  # Salesforce: usable for upsert, unique, case-insensitive
    unique: bool = False  # HubSpot: a duplicate value is a 409 (contacts' email)
    references: tuple[str, ...] = ()  # Salesforce reference targets, e.g. ("User", "Group") for Lead.OwnerId
    picklist: tuple[str, ...] = ()  # allowed values, when restricted
    createonly: bool = False  # Salesforce: set on create, never updated (AccountTeamMember.AccountId, UserId)
    # Salesforce field limits, as describe reports them (0: none): characters of a text field, digits of an
    # int, precision (all digits) and scale (after the point) of a double or currency.
    length: int = 0
    digits: int = 0
    precision: int = 0
    scale: int = 0


@dataclass(frozen=True)
class ObjectSpec:
    """One object type: its name, id prefix (Salesforce) and fields, by name."""

    name: str
    fields: tuple[FieldSpec, ...]
    key_prefix: str = ""

    def field(self, name: str) -> FieldSpec | None:
        """The field with this name, case-insensitively (Salesforce field names are case-insensitive)."""
        return _index(self).get(name.lower())

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]


_INDEXES: dict[int, dict[str, FieldSpec]] = {}


def _index(spec: ObjectSpec) -> dict[str, FieldSpec]:
    idx = _INDEXES.get(id(spec))
    if idx is None:
        idx = {f.name.lower(): f for f in spec.fields}
        _INDEXES[id(spec)] = idx
    return idx


def _f(name: str, type: FieldType = "string", **kw: object) -> FieldSpec:
    return FieldSpec(name, type, **kw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------- Salesforce

SF_SYSTEM_FIELDS: tuple[FieldSpec, ...] = (
    _f("Id", "id", readonly=True),
    _f("IsDeleted", "boolean", readonly=True),
    _f("CreatedDate", "datetime", readonly=True),
    _f("CreatedById", "reference", readonly=True, references=("User",)),
    _f("LastModifiedDate", "datetime", readonly=True),
    _f("LastModifiedById", "reference", readonly=True, references=("User",)),
    _f("SystemModstamp", "datetime", readonly=True),
)

LEAD_STATUSES = (
    "Open - Not Contacted",
    "Working - Contacted",
    "Nurturing",
    "Closed - Converted",
    "Closed - Not Converted",
)
OPPORTUNITY_STAGES = (
    "Prospecting",
    "Qualification",
    "Needs Analysis",
    "Proposal/Price Quote",
    "Negotiation/Review",
    "Closed Won",
    "Closed Lost",
)
SYNCD_SF_CUSTOM = (
    # The HubSpot id of the linked record: syncd's upsert key, so a retried create never duplicates.
    _f("Syncd_HubSpot_Id__c", "string", external_id=True, length=255),
    _f("Syncd_Score__c", "double", precision=18, scale=2),
    _f("Syncd_Stage__c", "string", length=255),
)

# The account's tier (segment) as syncd's teams.toml decides it: text, so an admin's own tier names fit.
SYNCD_SF_ACCOUNT_CUSTOM = (_f("Syncd_Tier__c", "string", length=255),)

# AccountTeamMember (Salesforce Object Reference, "AccountTeamMember", API 67.0): one User on one Account's
# team. AccountId and UserId are Create/Filter only (never updated); Title and PhotoUrl are read only (the
# user's own); the access levels are picklists. TeamMemberRole's values are defined per org ("Team Roles" in
# Setup): the Salesforce defaults plus the roles syncd's default teams.toml uses, as an admin adds them.
TEAM_MEMBER_ROLES = (
    "Account Manager",
    "Channel Manager",
    "Executive Sponsor",
    "Lead Qualifier",
    "Pre-Sales Consultant",
    "Sales Manager",
    "Sales Rep",
    "Account Executive",
    "Customer Success Manager",
    "Sales Development Rep",
)
ACCOUNT_ACCESS_LEVELS = ("Read", "Edit", "All")
RELATED_ACCESS_LEVELS = ("None", "Read", "Edit")
ACCOUNT_TEAM_MEMBER = ObjectSpec(
    "AccountTeamMember",
    key_prefix="01M",
    fields=(
        *SF_SYSTEM_FIELDS,
        _f("AccountId", "reference", required=True, createonly=True, references=("Account",)),
        _f("UserId", "reference", required=True, createonly=True, references=("User",)),
        _f("TeamMemberRole", "picklist", picklist=TEAM_MEMBER_ROLES, length=40),
        _f("AccountAccessLevel", "picklist", picklist=ACCOUNT_ACCESS_LEVELS, length=40),
        _f("OpportunityAccessLevel", "picklist", picklist=RELATED_ACCESS_LEVELS, length=40),
        _f("CaseAccessLevel", "picklist", picklist=RELATED_ACCESS_LEVELS, length=40),
        _f(
            "ContactAccessLevel",
            "picklist",
            picklist=(*RELATED_ACCESS_LEVELS, "ControlledByParent"),
            length=40,
        ),
        _f("Title", "string", readonly=True, length=80),
    ),
)

# Field limits of the standard fields (length, digits, precision/scale) as describe reports them in an
# Enterprise/Developer Edition org: Salesforce Object Reference, the field tables of Lead, Contact, Account,
# Opportunity, User and Group ("Type: string ... Length"), and SOAP API Developer Guide, "Field Types"
# (int fields carry ``digits``; double and currency carry ``precision`` and ``scale``). MasterRecordId: "If this
# object was deleted as the result of a merge, this field contains the ID of the record that was kept"
# (Object Reference, Lead/Contact/Account). The custom fields syncd needs are Text(255) and Number(16, 2).
SALESFORCE_OBJECTS: dict[str, ObjectSpec] = {
    spec.name: spec
    for spec in (
        ObjectSpec(
            "User",
            key_prefix="005",
            fields=(
                *SF_SYSTEM_FIELDS,
                _f("Username", required=True, length=80),
                _f("Email", "email", required=True, length=128),
                _f("FirstName", length=40),
                _f("LastName", required=True, length=80),
                _f("Name", readonly=True, length=121),
                _f("IsActive", "boolean"),
                _f("Title", length=80),
                _f("Department", length=80),
                _f("UserType", readonly=True, length=40),
            ),
        ),
        ObjectSpec(
            "Group",
            key_prefix="00G",
            fields=(
                *SF_SYSTEM_FIELDS,
                _f("Name", required=True, length=40),
                _f("DeveloperName", length=80),
                _f("Type", "picklist", picklist=("Queue", "Regular"), length=40),
                _f("Email", "email", length=255),
            ),
        ),
        ObjectSpec(
            "Account",
            key_prefix="001",
            fields=(
                *SF_SYSTEM_FIELDS,
                _f("Name", required=True, length=255),
                _f("Website", "url", length=255),
                _f("Industry", "picklist", length=255),
                _f("NumberOfEmployees", "int", digits=8),
                _f("AnnualRevenue", "currency", precision=18, scale=0),
                _f("Type", "picklist", length=255),
                _f("BillingCountry", length=80),
                _f("BillingState", length=80),
                _f("BillingCity", length=40),
                _f("Phone", "phone", length=40),
                _f("OwnerId", "reference", references=("User",)),
                _f("MasterRecordId", "reference", readonly=True, references=("Account",)),
                *SYNCD_SF_CUSTOM,
                *SYNCD_SF_ACCOUNT_CUSTOM,
            ),
        ),
        ObjectSpec(
            "Lead",
            key_prefix="00Q",
            fields=(
                *SF_SYSTEM_FIELDS,
                _f("FirstName", length=40),
                _f("LastName", required=True, length=80),
                _f("Name", readonly=True, length=121),
                _f("Email", "email", length=80),
                _f("Company", required=True, length=255),
                _f("Title", length=128),
                _f("Phone", "phone", length=40),
                _f("Website", "url", length=255),
                _f("Country", length=80),
                _f("State", length=80),
                _f("City", length=40),
                _f("Industry", "picklist", length=255),
                _f("NumberOfEmployees", "int", digits=8),
                _f("AnnualRevenue", "currency", precision=18, scale=0),
                _f("LeadSource", "picklist", length=255),
                _f("Status", "picklist", picklist=LEAD_STATUSES, length=255),
                _f("Rating", "picklist", length=255),
                _f("OwnerId", "reference", references=("User", "Group")),
                _f("MasterRecordId", "reference", readonly=True, references=("Lead",)),
                _f("IsConverted", "boolean", readonly=True),
                _f("ConvertedDate", "date", readonly=True),
                _f("ConvertedContactId", "reference", readonly=True, references=("Contact",)),
                _f("ConvertedAccountId", "reference", readonly=True, references=("Account",)),
                _f("ConvertedOpportunityId", "reference", readonly=True, references=("Opportunity",)),
                *SYNCD_SF_CUSTOM,
            ),
        ),
        ObjectSpec(
            "Contact",
            key_prefix="003",
            fields=(
                *SF_SYSTEM_FIELDS,
                _f("AccountId", "reference", references=("Account",)),
                _f("FirstName", length=40),
                _f("LastName", required=True, length=80),
                _f("Name", readonly=True, length=121),
                _f("Email", "email", length=80),
                _f("Title", length=128),
                _f("Phone", "phone", length=40),
                _f("MailingCountry", length=80),
                _f("MailingState", length=80),
                _f("MailingCity", length=40),
                _f("LeadSource", "picklist", length=255),
                _f("OwnerId", "reference", references=("User",)),
                _f("MasterRecordId", "reference", readonly=True, references=("Contact",)),
                *SYNCD_SF_CUSTOM,
            ),
        ),
        ObjectSpec(
            "Opportunity",
            key_prefix="006",
            fields=(
                *SF_SYSTEM_FIELDS,
                _f("AccountId", "reference", references=("Account",)),
                _f("Name", required=True, length=120),
                _f("StageName", "picklist", required=True, picklist=OPPORTUNITY_STAGES, length=255),
                _f("Amount", "currency", precision=18, scale=2),
                _f("CloseDate", "date", required=True),
                _f("Type", "picklist", length=255),
                _f("IsClosed", "boolean", readonly=True),
                _f("IsWon", "boolean", readonly=True),
                _f("OwnerId", "reference", references=("User",)),
                _f("Syncd_HubSpot_Id__c", "string", external_id=True, length=255),
            ),
        ),
        ACCOUNT_TEAM_MEMBER,
    )
}

# --------------------------------------------------------------------------------------------- HubSpot

LIFECYCLE_STAGES = (
    "subscriber",
    "lead",
    "marketingqualifiedlead",
    "salesqualifiedlead",
    "opportunity",
    "customer",
    "evangelist",
    "other",
)
DEAL_STAGES = (
    "appointmentscheduled",
    "qualifiedtobuy",
    "presentationscheduled",
    "decisionmakerboughtin",
    "contractsent",
    "closedwon",
    "closedlost",
)

HS_SYSTEM_PROPERTIES: tuple[FieldSpec, ...] = (
    _f("hs_object_id", "string", readonly=True),
    _f("createdate", "datetime", readonly=True),
    # The HubSpot user id (an owner's userId) of whoever made the last change; empty for app tokens.
    _f("hs_updated_by_user_id", "string", readonly=True),
)
SYNCD_HS_CUSTOM = (
    # The Salesforce id of the linked record (Lead or Contact; Account on companies).
    _f("syncd_salesforce_id", "string"),
    _f("syncd_score", "double"),
)

# Account-team roles on HubSpot records: custom owner properties (type enumeration, fieldType select,
# referencedObjectType OWNER), one per role, since HubSpot companies have one owner (hubspot_owner_id) and no
# account team. Their values are owner ids, checked like hubspot_owner_id's. "OWNER" in ``references`` marks
# them. The tier is plain text, like Salesforce's Syncd_Tier__c.
HS_OWNER_REFERENCE = "OWNER"
SYNCD_HS_TEAM_ROLES = (
    "syncd_account_executive",
    "syncd_account_manager",
    "syncd_csm",
    "syncd_sdr",
    "syncd_executive_sponsor",
)
SYNCD_HS_CONTACT_TEAM_ROLES = ("syncd_account_manager", "syncd_csm")
SYNCD_HS_COMPANY_CUSTOM = (
    _f("syncd_tier", "string"),
    *(_f(name, "reference", references=(HS_OWNER_REFERENCE,)) for name in SYNCD_HS_TEAM_ROLES),
)
SYNCD_HS_CONTACT_CUSTOM = tuple(
    _f(name, "reference", references=(HS_OWNER_REFERENCE,)) for name in SYNCD_HS_CONTACT_TEAM_ROLES
)

HUBSPOT_OBJECTS: dict[str, ObjectSpec] = {
    spec.name: spec
    for spec in (
        ObjectSpec(
            "contacts",
            fields=(
                *HS_SYSTEM_PROPERTIES,
                _f("lastmodifieddate", "datetime", readonly=True),
                # The ids merged into this record, ";"-separated (set by HubSpot on a merge).
                _f("hs_merged_object_ids", "string", readonly=True),
                _f("email", "email", unique=True),
                _f("firstname"),
                _f("lastname"),
                _f("company"),
                _f("jobtitle"),
                _f("phone", "phone"),
                _f("website", "url"),
                _f("country"),
                _f("state"),
                _f("city"),
                _f("industry"),
                _f("numemployees", "int"),
                _f("annualrevenue", "currency"),
                _f("lifecyclestage", "picklist", picklist=LIFECYCLE_STAGES),
                _f("hs_lead_status", "picklist"),
                _f("hubspot_owner_id", "string"),
                _f("hubspotscore", "double", readonly=True),
                # Engagement signals, maintained by HubSpot's tracking in a real portal.
                _f("num_conversion_events", "int"),
                _f("hs_email_click", "int"),
                _f("hs_analytics_num_page_views", "int"),
                _f("notes_last_updated", "datetime"),
                _f("recent_conversion_date", "datetime", readonly=True),
                _f("hs_email_last_click_date", "datetime", readonly=True),
                _f("hs_analytics_last_visit_timestamp", "datetime", readonly=True),
                _f("hs_last_sales_activity_timestamp", "datetime", readonly=True),  # "Last Engagement Date"
                _f("hs_analytics_source", "picklist"),
                *SYNCD_HS_CUSTOM,
                *SYNCD_HS_CONTACT_CUSTOM,
            ),
        ),
        ObjectSpec(
            "companies",
            fields=(
                *HS_SYSTEM_PROPERTIES,
                _f("hs_lastmodifieddate", "datetime", readonly=True),
                _f("hs_merged_object_ids", "string", readonly=True),
                _f("name"),
                _f("domain"),
                _f("website", "url"),
                _f("industry"),
                _f("numberofemployees", "int"),
                _f("annualrevenue", "currency"),
                _f("country"),
                _f("state"),
                _f("city"),
                _f("lifecyclestage", "picklist", picklist=LIFECYCLE_STAGES),
                _f("hubspot_owner_id", "string"),
                *SYNCD_HS_CUSTOM,
                *SYNCD_HS_COMPANY_CUSTOM,
            ),
        ),
        ObjectSpec(
            "deals",
            fields=(
                *HS_SYSTEM_PROPERTIES,
                _f("hs_lastmodifieddate", "datetime", readonly=True),
                _f("dealname"),
                _f("amount", "currency"),
                _f("dealstage", "picklist", picklist=DEAL_STAGES),
                _f("pipeline"),
                _f("closedate", "datetime"),
                _f("hubspot_owner_id", "string"),
                # Calculated by HubSpot from the deal stage.
                _f("hs_is_closed", "boolean", readonly=True),
                _f("hs_is_closed_won", "boolean", readonly=True),
                _f("syncd_salesforce_id", "string"),
            ),
        ),
    )
}

HUBSPOT_LAST_MODIFIED = {
    "contacts": "lastmodifieddate",
    "companies": "hs_lastmodifieddate",
    "deals": "hs_lastmodifieddate",
}


@dataclass
class OrgSchema:
    """The org metadata of one sandbox: the defaults above plus custom fields declared per sandbox."""

    salesforce: dict[str, ObjectSpec] = field(default_factory=lambda: dict(SALESFORCE_OBJECTS))
    hubspot: dict[str, ObjectSpec] = field(default_factory=lambda: dict(HUBSPOT_OBJECTS))

    def with_custom(self, system: Literal["salesforce", "hubspot"], obj: str, *specs: FieldSpec) -> OrgSchema:
        """A copy with extra custom fields on one object (e.g. a second score field)."""
        objects = dict(getattr(self, system))
        base = objects[obj]
        objects[obj] = ObjectSpec(base.name, (*base.fields, *specs), base.key_prefix)
        if system == "salesforce":
            return OrgSchema(salesforce=objects, hubspot=self.hubspot)
        return OrgSchema(salesforce=self.salesforce, hubspot=objects)
