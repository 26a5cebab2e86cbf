"""Sales: Lead Qualifier -> Product Specialist -> Closer, and Closer -> Specialist for questions.

A qualified lead moves on by a rule (the case file says ``qualified``); an
unqualified one gets a polite answer from the qualifier and no handoff, and
the specialist's precondition keeps it that way whatever anyone asks for.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from langchain_core.tools import BaseTool, InjectedToolArg, tool
from pydantic import Field

from handoff.agents.ledger import LedgerHome
from handoff.agents.sales.data import (
    PLANS,
    Lead,
    annual_price,
    answers_for,
    disqualifiers,
    lead_in,
    plan_for,
    plan_in,
    volume_discount,
)
from handoff.agents.spec import AgentSpec, HandoffPayload, InitContext
from handoff.agents.tooling import ToolContext
from handoff.agents.triggers import CaseFileTrigger, SemanticTrigger, TriggerContext, bind_semantic_routes
from handoff.state import CaseFile, InitResult

QUALIFIER = "lead_qualifier"
SPECIALIST = "product_specialist"
CLOSER = "closer"
PlanName = Literal["Starter", "Team", "Enterprise"]
QUOTE_ID = r"^QUO-\d+$"


class SalesCaseFile(CaseFile):
    """What sales knows about the lead, its needs and the deal."""

    company: str | None = None
    contact_name: str | None = None
    contact_role: str | None = None
    seats: int | None = Field(default=None, ge=1)
    budget_per_year: float | None = Field(default=None, ge=0)
    timeline: str | None = None
    current_tool: str | None = None
    qualified: bool | None = None
    disqualify_reason: str | None = None
    needs: list[str] = Field(default_factory=list)
    recommended_plan: PlanName | None = None
    quote_ids: list[Annotated[str, Field(pattern=QUOTE_ID)]] = Field(default_factory=list)
    quote_id: str | None = Field(default=None, pattern=QUOTE_ID)
    quoted_plan: PlanName | None = None
    quote_total: float | None = Field(default=None, ge=0)
    quote_current: bool | None = Field(
        default=None, description="The latest quote still fits the seats and plan on file.")
    order_id: str | None = Field(default=None, pattern=r"^ORD-\d+$")

    bound_facts: ClassVar[dict[str, str | tuple[str, ...]]] = {"quote_current": ("seats", "recommended_plan")}
    """A quote is for the seats and plan on file when it was made: other seats or another plan make it stale."""


class SpecialistHandoff(HandoffPayload):
    """The specialist needs the company and its size; a pull-back carries the question."""

    company: str = Field(min_length=2, description="The lead's company.")
    seats: int = Field(ge=1, description="How many seats the lead needs.")
    question: str | None = Field(default=None, description="The product question to answer, if any.")


class ClosingHandoff(HandoffPayload):
    """The closer needs the company, the seats and the plan to quote."""

    company: str = Field(min_length=2, description="The lead's company.")
    seats: int = Field(ge=1, description="How many seats to quote.")
    recommended_plan: PlanName = Field(description="The plan the specialist recommends.")


def _lead_facts(lead: Lead) -> dict[str, Any]:
    return {"company": lead.company, "contact_name": lead.contact_name, "contact_role": lead.contact_role,
            "seats": lead.seats, "budget_per_year": lead.budget_per_year, "timeline": lead.timeline,
            "current_tool": lead.current_tool}


def qualifier_tools() -> tuple[BaseTool, ...]:
    @tool(response_format="content_and_artifact")
    def qualify_lead(company: str) -> tuple[str, dict[str, Any]]:
        """Check a lead against the CRM and the rules (budget, authority, need, timeline).
        Use when: evaluating, evaluate, interested, looking, buy, team"""
        lead = lead_in(company)
        if lead is None:
            return "I could not find that company in the CRM; which company are you with?", {}
        reasons = disqualifiers(lead)
        if reasons:
            why = "; ".join(reasons)
            return (f"Thank you for your interest, {lead.contact_name}! {lead.company} is not a fit for our "
                    f"sales-led plans today ({why}). Our free self-serve trial and getting-started guides "
                    "suit a team your size, and we would be glad to talk again when that changes. All the best!",
                    {**_lead_facts(lead), "qualified": False, "disqualify_reason": why})
        return (f"{lead.company} qualifies: {lead.seats} seats, budget {lead.budget_per_year:,.0f}/year, "
                f"{lead.contact_name} ({lead.contact_role}) decides, timeline {lead.timeline}. "
                "A product specialist takes it from here.",
                {**_lead_facts(lead), "qualified": True})

    @tool
    def lookup_company(company: str) -> str:
        """Look up a company's CRM record. Use when: lookup, look up, record"""
        lead = lead_in(company)
        if lead is None:
            return "no such company in the CRM"
        return (f"{lead.company}: contact {lead.contact_name} ({lead.contact_role}), {lead.seats} seats, "
                f"budget {lead.budget_per_year:,.0f}/year, timeline {lead.timeline}, uses {lead.current_tool}")

    return (qualify_lead, lookup_company)


def specialist_tools() -> tuple[BaseTool, ...]:
    @tool(response_format="content_and_artifact")
    def answer_product_question(
        question: str, ctx: Annotated[ToolContext, InjectedToolArg]
    ) -> tuple[str, dict[str, Any]]:
        """Answer a product question from the catalogue and update the recommended plan.
        Use when: sso, okta, import, spreadsheet, csv, integration, api, audit, compliance, forecast, residency, feature"""
        found = answers_for(question)
        if not found:
            return "the catalogue has no answer to that; features: " + ", ".join(PLANS["Enterprise"].features), {}
        needs = list(dict.fromkeys([*(ctx.case_file.get("needs") or []), *(a.feature for a in found)]))
        plan = plan_for(int(ctx.case_file.get("seats") or 1), needs)
        text = "; ".join(a.answer for a in found)
        return f"{text}. For {', '.join(needs)} the right plan is {plan}.", {"needs": needs, "recommended_plan": plan}

    @tool(response_format="content_and_artifact")
    def recommend_plan(seats: int, ctx: Annotated[ToolContext, InjectedToolArg]) -> tuple[str, dict[str, Any]]:
        """Recommend the cheapest plan with every needed feature for the seat count.
        Use when: which plan, recommend, fits, compare"""
        seats = int(ctx.case_file.get("seats") or seats)
        needs = list(ctx.case_file.get("needs") or [])
        plan = plan_for(seats, needs)
        listed, net = annual_price(plan, seats)
        return (f"{plan} fits {seats} seats with {', '.join(needs) or 'the basics'}: "
                f"{PLANS[plan].price_per_seat_month:.0f}/seat/month, {listed:,.0f}/year list",
                {"recommended_plan": plan})

    return (answer_product_question, recommend_plan)


def closer_tools(home: LedgerHome) -> tuple[BaseTool, ...]:
    @tool(response_format="content_and_artifact")
    def create_quote(plan: str, seats: int, ctx: Annotated[ToolContext, InjectedToolArg]) -> tuple[str, dict[str, Any]]:
        """Prepare a quote for a plan and seat count, with the volume discount. Use when: quote, pricing, price, cost"""
        case = ctx.case_file
        name = plan if plan in PLANS else plan_in(plan) or case.get("recommended_plan")
        if name not in PLANS:
            return f"refused: name a plan ({', '.join(PLANS)})", {}
        if seats < 1:
            return f"refused: a quote needs at least one seat, not {seats}", {}
        listed, net = annual_price(str(name), seats)
        ledger = home.ledger(ctx.store)
        # The n-th quote of this conversation: a retried step asks for the same one again.
        key = ctx.key("quote", len(case.get("quote_ids") or []) + 1)
        record, _ = ledger.record_once("quote", key, {"plan": name, "seats": seats, "list": listed, "total": net,
                                                      "thread_id": ctx.thread_id}, prefix="QUO", first=801)
        quote, deal = record.record_id, record.data
        ledger.establish(ctx.thread_id, "quote", quote, holds_when={"quote_ids": quote}, data=deal)
        budget = case.get("budget_per_year")
        over = f"; that is above the stated budget of {budget:,.0f}" if budget and deal["total"] > budget else ""
        return (f"{quote}: {deal['plan']} for {deal['seats']} seats, {deal['list']:,.0f}/year list, "
                f"{volume_discount(deal['seats']):.0%} volume discount, {deal['total']:,.2f}/year{over}",
                {"quote_ids": [quote], "quote_id": quote, "quoted_plan": deal["plan"], "quote_total": deal["total"],
                 "quote_current": True})

    @tool(response_format="content_and_artifact")
    def send_order_form(ctx: Annotated[ToolContext, InjectedToolArg]) -> tuple[str, dict[str, Any]]:
        """Send the order form for the latest quote to the contact. Use when: order form, order, contract"""
        case = ctx.case_file
        quote = case.get("quote_id")
        if not quote:
            return "refused: there is no quote to order yet", {}
        if not case.get("quote_current"):
            return f"refused: {quote} no longer fits the seats or plan on file; prepare a new quote first", {}
        ledger = home.ledger(ctx.store)
        # The order is for the quote as recorded in this conversation, never for case-file figures.
        prepared = ledger.fact(ctx.thread_id, "quote", str(quote))
        if prepared is None:
            return f"refused: {quote} was not prepared in this conversation", {}
        deal = prepared.data
        order_id = "ORD-" + str(quote).removeprefix("QUO-")  # one order per quote, and quote ids are unique
        record, new = ledger.record_once("order", f"order:{quote}", {"quote_id": quote, **deal},
                                         record_id=order_id)
        verb = "sent" if new else "was already sent"
        return (f"order form {record.record_id} for {quote} ({deal['plan']}, {deal['seats']} seats, "
                f"{deal['total']:,.2f}/year) {verb} to {case.get('contact_name') or 'the contact'}",
                {"order_id": record.record_id})

    return (create_quote, send_order_form)


def _load_profile(ctx: InitContext) -> InitResult:
    """Specialist's initialisation: the lead's profile, or the open deal when pulled back in."""
    payload = ctx.payload_as(SpecialistHandoff)
    case = ctx.case_file
    plan = plan_for(payload.seats, list(case.get("needs") or []))
    if case.get("quote_id"):
        summary = (f"pulled back in while {case['quote_id']} ({case.get('quoted_plan')}, {payload.seats} seats) "
                   f"is open; question: {(payload.question or 'not given').rstrip('.')}")
        return InitResult(action="load_open_deal", summary=summary)
    summary = (f"{payload.company}: {payload.seats} seats, contact {case.get('contact_name')} "
               f"({case.get('contact_role')}), today on {case.get('current_tool')}; starting point: {plan}")
    return InitResult(action="load_lead_profile", summary=summary, case_file_updates={"recommended_plan": plan})


def _prepare_deal(ctx: InitContext) -> InitResult:
    """Closer's initialisation: list price and discount for the recommended plan."""
    payload = ctx.payload_as(ClosingHandoff)
    listed, net = annual_price(payload.recommended_plan, payload.seats)
    return InitResult(
        action="prepare_deal",
        summary=f"{payload.recommended_plan} for {payload.seats} seats: {listed:,.0f}/year list, "
                f"{net:,.2f}/year after a {volume_discount(payload.seats):.0%} volume discount",
    )


def lead_is_qualified(case_file: dict[str, Any], payload: HandoffPayload) -> str | None:
    """Only qualified leads get the specialist's (and the closer's) time.

    Args:
        case_file: The conversation's case file.
        payload: The validated handoff payload (unused).
    """
    if case_file.get("qualified") is True:
        return None
    why = case_file.get("disqualify_reason") or "it has not been qualified yet"
    return f"the lead is not qualified: {why}"


def _profile_payload(ctx: TriggerContext) -> dict[str, Any]:
    case = ctx.case_file
    return {"company": case.get("company"), "seats": case.get("seats"), "question": ctx.message[:300],
            "summary": f"Qualified lead: {case.get('company')}, {case.get('seats')} seats, "
                       f"{case.get('contact_name')} ({case.get('contact_role')}) decides, {case.get('timeline')}"}


def _closing_payload(ctx: TriggerContext) -> dict[str, Any]:
    case = ctx.case_file
    fields = {"company": case.get("company"), "seats": case.get("seats"),
              "recommended_plan": case.get("recommended_plan")}
    return {k: v for k, v in fields.items() if v}


def _question_payload(ctx: TriggerContext) -> dict[str, Any]:
    case = ctx.case_file
    fields = {"company": case.get("company"), "seats": case.get("seats"), "question": ctx.message[:300]}
    return {k: v for k, v in fields.items() if v}


PRICING_EXAMPLES = (
    "how much would this cost us?",
    "can we get a quote?",
    "what is the price for our team?",
    "is there a discount if we sign for a year?",
    "what would that come to per year?",
)
"""Asking about money for the deal, in the buyer's own words."""

PRODUCT_EXAMPLES = (
    "does it support single sign-on?",
    "can we import our existing data?",
    "which integrations do you offer?",
    "is there an audit log for compliance?",
    "which plan fits our needs?",
    "where is our data stored?",
)
"""Product questions, in the buyer's own words."""


def sales_agents(home: LedgerHome | None = None) -> list[AgentSpec]:
    """The lead qualifier, the product specialist and the closer.

    Args:
        home: Where quotes and orders are recorded when the graph has no store; a new one by default.
    """
    home = home or LedgerHome()
    # No semantic trigger from the qualifier: the qualified-lead rule already hands every message of a
    # qualified lead on, and the gate refuses an unqualified one whatever it asks.
    return bind_semantic_routes([
        AgentSpec(
            name=QUALIFIER,
            title="Lead Qualifier",
            description="Greets new leads and qualifies them on budget, authority, need and timeline.",
            instructions=(
                "You qualify inbound leads. Check the company against the CRM. A qualified lead "
                "goes on to a product specialist; an unqualified one gets a kind, honest answer "
                "and helpful free resources, and no handoff."
            ),
            topics=("hello", "qualify", "budget", "timeline", "evaluating", "interested"),
            tools=qualifier_tools(),
            handoffs=(SPECIALIST,),
            triggers=(
                CaseFileTrigger(name="qualified_lead", target=SPECIALIST,
                                reason="The lead is qualified.",
                                predicate=lambda case: case.get("qualified") is True,
                                payload=_profile_payload),
            ),
        ),
        AgentSpec(
            name=SPECIALIST,
            title="Product Specialist",
            description="Answers product questions and recommends the plan that fits.",
            instructions=(
                "You know the product. Answer feature, integration and security questions from the "
                "catalogue, recommend the cheapest plan that fits, and hand pricing to the closer."
            ),
            topics=("feature", "features", "sso", "integration", "import", "api", "audit", "compliance",
                    "security", "plan", "plans"),
            tools=specialist_tools(),
            handoffs=(CLOSER,),
            payload_schema=SpecialistHandoff,
            on_enter=_load_profile,
            preconditions=(lead_is_qualified,),
            triggers=(
                SemanticTrigger(name="asks_about_price", target=CLOSER, examples=PRICING_EXAMPLES,
                                reason="The buyer asked about pricing.", payload=_closing_payload),
            ),
        ),
        AgentSpec(
            name=CLOSER,
            title="Closer",
            description="Prices the deal, quotes it and sends the order form.",
            instructions=(
                "You close deals. Quote the recommended plan with the volume discount, send the order "
                "form when the customer agrees, and bring the product specialist back for product questions."
            ),
            topics=("quote", "pricing", "price", "discount", "order", "contract", "deal"),
            tools=closer_tools(home),
            handoffs=(SPECIALIST,),
            payload_schema=ClosingHandoff,
            on_enter=_prepare_deal,
            preconditions=(lead_is_qualified,),
            triggers=(
                SemanticTrigger(name="asks_about_the_product", target=SPECIALIST, examples=PRODUCT_EXAMPLES,
                                reason="The buyer has a product question.", payload=_question_payload),
            ),
        ),
    ])
