"""The sales team's in-repo data: a small CRM, the plan catalogue, product answers, pricing rules."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Lead(BaseModel):
    """A company as the CRM knows it."""

    model_config = ConfigDict(frozen=True)

    company: str
    contact_name: str
    contact_role: str
    decision_maker: bool
    seats: int
    budget_per_year: float
    timeline: str
    current_tool: str


class PlanInfo(BaseModel):
    """One plan of the catalogue."""

    model_config = ConfigDict(frozen=True)

    name: str
    price_per_seat_month: float
    max_seats: int
    features: tuple[str, ...]


class ProductAnswer(BaseModel):
    """A catalogue answer to a product question, and the cheapest plan that has the feature."""

    model_config = ConfigDict(frozen=True)

    feature: str
    keywords: tuple[str, ...]
    answer: str
    min_plan: str


LEADS = {
    lead.company.lower(): lead
    for lead in (
        Lead(company="Northwind Traders", contact_name="Priya Nair", contact_role="VP Sales",
             decision_maker=True, seats=40, budget_per_year=30000, timeline="this quarter",
             current_tool="spreadsheets"),
        Lead(company="Globex", contact_name="Hank Ruiz", contact_role="Head of Revenue Operations",
             decision_maker=True, seats=150, budget_per_year=120000, timeline="next quarter",
             current_tool="an in-house CRM"),
        Lead(company="Tiny Studio", contact_name="Sam Lee", contact_role="co-founder",
             decision_maker=True, seats=2, budget_per_year=0, timeline="no date yet",
             current_tool="a shared inbox"),
    )
}

QUALIFYING_TIMELINES = ("this quarter", "next quarter")
MIN_SEATS = 5
MIN_BUDGET = 5000.0

PLANS = {
    p.name: p
    for p in (
        PlanInfo(name="Starter", price_per_seat_month=15, max_seats=10,
                 features=("pipeline", "email sync", "import")),
        PlanInfo(name="Team", price_per_seat_month=35, max_seats=200,
                 features=("pipeline", "email sync", "import", "sso", "api", "forecasting")),
        PlanInfo(name="Enterprise", price_per_seat_month=60, max_seats=100000,
                 features=("pipeline", "email sync", "import", "sso", "api", "forecasting",
                           "audit log", "scim", "data residency")),
    )
}
PLAN_ORDER = tuple(PLANS)

ANSWERS = (
    ProductAnswer(feature="sso", keywords=("sso", "okta", "single sign-on", "saml"),
                  answer="single sign-on (SAML, Okta, Entra ID) is included from Team", min_plan="Team"),
    ProductAnswer(feature="import", keywords=("import", "spreadsheet", "csv", "migrate"),
                  answer="spreadsheet and CSV import with field mapping is included in every plan",
                  min_plan="Starter"),
    ProductAnswer(feature="api", keywords=("api", "integration", "webhook"),
                  answer="the REST API and webhooks are included from Team", min_plan="Team"),
    ProductAnswer(feature="forecasting", keywords=("forecast",),
                  answer="pipeline forecasting is included from Team", min_plan="Team"),
    ProductAnswer(feature="audit log", keywords=("audit", "compliance"),
                  answer="the audit log (every change, exportable, kept 7 years) is an Enterprise feature",
                  min_plan="Enterprise"),
    ProductAnswer(feature="data residency", keywords=("residency", "eu data", "gdpr"),
                  answer="EU or US data residency is an Enterprise feature", min_plan="Enterprise"),
)


def lead_in(text: str) -> Lead | None:
    """The CRM lead whose company is named in ``text``, or None.

    Args:
        text: Free text that names a company.
    """
    lowered = text.lower()
    return next((lead for key, lead in LEADS.items() if key in lowered), None)


def disqualifiers(lead: Lead) -> list[str]:
    """Why a lead does not qualify (budget, authority, need, timeline); empty when it does.

    Args:
        lead: A lead from the CRM.
    """
    reasons = []
    if lead.seats < MIN_SEATS:
        reasons.append(f"{lead.seats} seats (our sales-led plans start at {MIN_SEATS})")
    if lead.budget_per_year < MIN_BUDGET:
        reasons.append("no budget set aside this year")
    if lead.timeline not in QUALIFYING_TIMELINES:
        reasons.append("no buying timeline yet")
    if not lead.decision_maker:
        reasons.append("we have not yet spoken to the person who decides")
    return reasons


def answers_for(question: str) -> list[ProductAnswer]:
    """Catalogue answers whose keywords appear in ``question``.

    Args:
        question: The product question as asked.
    """
    lowered = question.lower()
    return [a for a in ANSWERS if any(k in lowered for k in a.keywords)]


def plan_for(seats: int, features: list[str]) -> str:
    """The cheapest plan with every feature that also fits the seat count.

    Args:
        seats: Seats the customer needs.
        features: Features the customer asked for.
    """
    for name in PLAN_ORDER:
        plan = PLANS[name]
        if seats <= plan.max_seats and all(f in plan.features for f in features):
            return name
    return PLAN_ORDER[-1]


def plan_in(text: str) -> str | None:
    """The plan named in ``text``, or None.

    Args:
        text: Free text that may name a plan.
    """
    lowered = text.lower()
    return next((name for name in reversed(PLAN_ORDER) if name.lower() in lowered), None)


def volume_discount(seats: int) -> float:
    """The discount rate for a seat count: 10% from 25 seats, 15% from 100.

    Args:
        seats: Seats on the quote.
    """
    return 0.15 if seats >= 100 else 0.10 if seats >= 25 else 0.0


def annual_price(plan: str, seats: int) -> tuple[float, float]:
    """List price per year and the price after the volume discount.

    Args:
        plan: A plan name from PLANS.
        seats: Seats on the quote.
    """
    listed = PLANS[plan].price_per_seat_month * seats * 12
    return listed, round(listed * (1 - volume_discount(seats)), 2)
