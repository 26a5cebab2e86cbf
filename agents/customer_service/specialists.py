"""Customer service: General Support -> Technical Specialist -> Billing Expert."""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal

from langchain_core.tools import BaseTool, InjectedToolArg, tool
from pydantic import Field

from handoff.agents.customer_service.back_office import BackOffice, BackOfficeError
from handoff.agents.spec import AgentSpec, ContextPolicy, HandoffPayload, InitContext
from handoff.agents.tooling import ToolContext
from handoff.agents.triggers import KeywordTrigger, SemanticTrigger, TriggerContext, bind_semantic_routes
from handoff.state import CaseFile, InitResult

GENERAL = "general_support"
TECHNICAL = "technical_specialist"
BILLING = "billing_expert"


class SupportCaseFile(CaseFile):
    """What customer service knows about the customer and the problem."""

    account_id: str | None = Field(default=None, pattern=r"^ACC-\d+$")
    customer_name: str | None = None
    identity_verified: bool | None = None
    product: str | None = None
    region: str | None = None
    problem_summary: str | None = None
    steps_tried: list[str] = Field(default_factory=list)
    service_status: str | None = None
    invoice_id: str | None = Field(default=None, pattern=r"^INV-\d+$")
    amount: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    refund_ids: list[str] = Field(default_factory=list)
    ticket_id: str | None = None
    sentiment: Literal["calm", "frustrated", "angry"] | None = None

    bound_facts: ClassVar[dict[str, str | tuple[str, ...]]] = {"identity_verified": "account_id"}
    """A verification is of one account's owner: another account on file resets it."""


class TechnicalHandoff(HandoffPayload):
    """A technical specialist needs the account and the symptoms."""

    account_id: str = Field(pattern=r"^ACC-\d+$", description="The customer's account id.")
    symptoms: str = Field(min_length=3, description="What the customer experiences.")


class BillingHandoff(HandoffPayload):
    """A billing expert needs the account; the invoice helps if known."""

    account_id: str = Field(pattern=r"^ACC-\d+$", description="The customer's account id.")
    invoice_id: str | None = Field(default=None, pattern=r"^INV-\d+$")
    wants_refund: bool = Field(default=False, description="The customer asks for money back.")


def general_tools(office: BackOffice) -> tuple[BaseTool, ...]:
    @tool(response_format="content_and_artifact")
    def lookup_account(account_id: Annotated[str, Field(pattern=r"^ACC-\d+$")]) -> tuple[str, dict[str, Any]]:
        """Look up a customer's account. Use when: account, acc-, plan"""
        try:
            a = office.account(account_id)
        except BackOfficeError as exc:
            return f"error: {exc}", {}
        return (
            f"{a.account_id}: {a.customer_name}, plan {a.plan}, region {a.region}",
            {"account_id": a.account_id, "customer_name": a.customer_name, "product": a.plan,
             "region": a.region},
        )

    @tool(response_format="content_and_artifact")
    def verify_identity(
        account_id: Annotated[str, Field(pattern=r"^ACC-\d+$")],
        postcode: Annotated[str, Field(pattern=r"^\d{5}$")],
        ctx: Annotated[ToolContext, InjectedToolArg],
    ) -> tuple[str, dict[str, Any]]:
        """Verify the caller owns the account by its postcode. Use when: postcode, verify"""
        try:
            ok = office.verify_owner(ctx.store, thread_id=ctx.thread_id, account_id=account_id, postcode=postcode)
        except BackOfficeError as exc:
            return f"error: {exc}", {}
        # The fact travels with its subject: verified for this account, not for whatever is on file.
        return (("identity verified" if ok else "postcode does not match"),
                {"account_id": account_id, "identity_verified": ok})

    return (lookup_account, verify_identity)


def technical_tools(office: BackOffice) -> tuple[BaseTool, ...]:
    @tool(response_format="content_and_artifact")
    def run_diagnostics(
        account_id: Annotated[str, Field(pattern=r"^ACC-\d+$")],
        ctx: Annotated[ToolContext, InjectedToolArg],
    ) -> tuple[str, dict[str, Any]]:
        """Run line diagnostics on an account. Use when: dropping, drops, slow, internet, connection, wifi"""
        try:
            result = office.diagnostics(account_id)
        except BackOfficeError as exc:
            return f"error: {exc}", {}
        return result, {"steps_tried": ["line diagnostics"]}

    @tool(response_format="content_and_artifact")
    def open_ticket(
        account_id: Annotated[str, Field(pattern=r"^ACC-\d+$")],
        subject: str,
        ctx: Annotated[ToolContext, InjectedToolArg],
    ) -> tuple[str, dict[str, Any]]:
        """Open an engineering ticket for a fault. Use when: ticket, engineer, technician"""
        ticket = office.open_ticket(ctx.store, idempotency_key=ctx.key("ticket", account_id),
                                    account_id=account_id, subject=subject[:120])
        return f"ticket {ticket} opened", {"ticket_id": ticket}

    return (run_diagnostics, open_ticket)


def billing_tools(office: BackOffice) -> tuple[BaseTool, ...]:
    @tool
    def list_invoices(account_id: Annotated[str, Field(pattern=r"^ACC-\d+$")]) -> str:
        """List an account's invoices. Use when: invoice, charged, bill, statement"""
        try:
            invoices = office.invoices(account_id)
        except BackOfficeError as exc:
            return f"error: {exc}"
        return "; ".join(
            f"{i.invoice_id} {i.amount:.2f} {i.description}"
            + (f" (duplicate of {i.duplicate_of})" if i.duplicate_of else "")
            for i in invoices
        )

    @tool(response_format="content_and_artifact")
    def issue_refund(
        invoice_id: Annotated[str, Field(pattern=r"^INV-\d+$")],
        ctx: Annotated[ToolContext, InjectedToolArg],
        amount: float | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """Refund an invoice (what is left of it unless an amount is given). Needs a verified identity.
        Use when: refund, money back"""
        case = ctx.case_file
        if not case.get("identity_verified") or not case.get("account_id"):
            return "refused: the customer's identity is not verified", {}
        # The case file only says who the conversation is about; the back office checks its own
        # record that this invoice's owner was verified in this very conversation.
        try:
            refund, new = office.refund(ctx.store, thread_id=ctx.thread_id,
                                        idempotency_key=ctx.key("refund", invoice_id),
                                        account_id=str(case["account_id"]), invoice_id=invoice_id,
                                        amount=amount)
        except BackOfficeError as exc:
            return f"refused: {exc}", {}
        verb = "issued" if new else "already issued"
        return (
            f"refund {refund.refund_id} of {refund.amount:.2f} {verb} for {invoice_id}",
            {"refund_ids": [refund.refund_id], "invoice_id": invoice_id, "amount": refund.amount},
        )

    return (list_invoices, issue_refund)


def _technical_init(office: BackOffice):
    def check_region_status(ctx: InitContext) -> InitResult:
        payload = ctx.payload_as(TechnicalHandoff)
        account = office.account(payload.account_id)
        status = office.service_status(account.region)
        return InitResult(
            action="check_region_status",
            summary=f"service in region {account.region}: {status}",
            case_file_updates={"region": account.region, "service_status": status,
                               "problem_summary": payload.symptoms[:200]},
        )

    return check_region_status


def _billing_init(office: BackOffice):
    def load_invoices(ctx: InitContext) -> InitResult:
        account_id = ctx.payload_as(BillingHandoff).account_id
        invoices = office.invoices(account_id)
        dupes = [i.invoice_id for i in invoices if i.duplicate_of]
        return InitResult(
            action="load_invoices",
            summary=f"{len(invoices)} invoices on {account_id}"
            + (f"; possible duplicate charge: {', '.join(dupes)}" if dupes else ""),
            case_file_updates={"account_id": account_id},
        )

    return load_invoices


def _needs_account(case_file: dict[str, Any], payload: HandoffPayload) -> str | None:
    return None if getattr(payload, "account_id", None) else "an account id is required"


def _refund_needs_identity(case_file: dict[str, Any], payload: HandoffPayload) -> str | None:
    """A refund handoff needs the owner of the payload's account verified.

    The same binding as ``SupportCaseFile.bound_facts``: a payload that names
    another account than the one verified would reset the verification, so it
    is refused here rather than accepted with a refund that cannot be paid.
    """
    if not getattr(payload, "wants_refund", False):
        return None
    if not case_file.get("identity_verified"):
        return "a refund needs a verified identity; verify the customer first"
    account_id = getattr(payload, "account_id", None)
    if account_id and account_id != case_file.get("account_id"):
        return (f"a refund needs a verified identity: {account_id} is not the account verified in this "
                f"conversation ({case_file.get('account_id')}); verify its owner first")
    return None


def _billing_payload(ctx: TriggerContext) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if ctx.case_file.get("account_id"):
        fields["account_id"] = ctx.case_file["account_id"]
    return fields


ACCOUNT_ID = re.compile(r"\bACC-\d+\b")
INVOICE_ID = re.compile(r"\bINV-\d+\b")


def _on_file_or_said(ctx: TriggerContext, field: str, pattern: re.Pattern[str]) -> str | None:
    """A field as a model would fill it: the case file first, else an id the user wrote."""
    found = pattern.search(ctx.message)
    return ctx.case_file.get(field) or (found.group(0) if found else None)


def _technical_payload(ctx: TriggerContext) -> dict[str, Any]:
    fields = {"account_id": _on_file_or_said(ctx, "account_id", ACCOUNT_ID), "symptoms": ctx.message[:300]}
    return {k: v for k, v in fields.items() if v}


def _money_payload(ctx: TriggerContext) -> dict[str, Any]:
    fields = {"account_id": _on_file_or_said(ctx, "account_id", ACCOUNT_ID),
              "invoice_id": _on_file_or_said(ctx, "invoice_id", INVOICE_ID)}
    return {k: v for k, v in fields.items() if v}


CONNECTION_FAULT_EXAMPLES = (
    "my internet connection keeps dropping out",
    "the broadband is really slow tonight",
    "I have had no internet at all since yesterday",
    "the wifi signal is weak and keeps disconnecting",
    "the lights on my router are flashing red",
    "is there an outage in my area?",
    "web pages will not load and videos keep buffering",
    "I restarted the router but it still cuts out",
)
"""Faults in the customer's own words: what a message to the Technical Specialist sounds like."""

MONEY_MATTER_EXAMPLES = (
    "I was charged twice this month",
    "I would like a refund please",
    "my bill is higher than it should be",
    "I have a question about my invoice",
    "there is a payment on my account I do not recognise",
    "please remove the extra fee you added",
    "when will I get my money back?",
)
"""Money matters in the customer's own words: what a message to the Billing Expert sounds like."""

GENERAL_EXAMPLES = (
    "hello, I have a quick question",
    "what are your opening hours?",
    "how do I change my contact details?",
    "I am moving house, what happens to my contract?",
    "can I upgrade to a bigger package?",
    "here are my account number and postcode",
)
"""What General Support hears, so that staying with it competes with the specialists' routes."""


def _to_technical() -> SemanticTrigger:
    return SemanticTrigger(name="sounds_like_a_fault", target=TECHNICAL, examples=CONNECTION_FAULT_EXAMPLES,
                           reason="The customer describes a connection or equipment fault.",
                           payload=_technical_payload)


def _to_billing() -> SemanticTrigger:
    return SemanticTrigger(name="sounds_like_money", target=BILLING, examples=MONEY_MATTER_EXAMPLES,
                           reason="The customer raised a billing matter.", payload=_money_payload)


def customer_service_agents(office: BackOffice | None = None) -> list[AgentSpec]:
    """The three customer-service specialists over one back office."""
    office = office or BackOffice()
    return bind_semantic_routes([
        AgentSpec(
            name=GENERAL,
            title="General Support",
            description="First contact: greets, identifies the customer, answers general questions.",
            instructions=(
                "You are the first point of contact for a broadband provider. Identify the "
                "customer (account id, postcode), answer general questions, and hand technical "
                "faults to the technical specialist and money matters to the billing expert."
            ),
            topics=("hello", "hours", "address", "general"),
            tools=general_tools(office),
            handoffs=(TECHNICAL, BILLING),
            triggers=(_to_technical(), _to_billing()),
        ),
        AgentSpec(
            name=TECHNICAL,
            title="Technical Specialist",
            description="Diagnoses connection faults, outages and equipment problems.",
            instructions=(
                "You diagnose connection problems. Run diagnostics, explain findings plainly, "
                "open a ticket when an engineer is needed. Hand billing questions to billing."
            ),
            topics=("internet", "connection", "dropping", "drops", "slow", "outage", "wifi",
                    "router", "error"),
            tools=technical_tools(office),
            handoffs=(BILLING, GENERAL),
            payload_schema=TechnicalHandoff,
            on_enter=_technical_init(office),
            preconditions=(_needs_account,),
            triggers=(
                KeywordTrigger(name="money_words", target=BILLING,
                               reason="The customer raised a billing matter.",
                               keywords=("refund", "charged", "invoice", "billing"),
                               payload=_billing_payload),
                _to_billing(),
            ),
        ),
        AgentSpec(
            name=BILLING,
            title="Billing Expert",
            description="Invoices, charges, refunds and payment questions.",
            instructions=(
                "You handle invoices and refunds. Refund only with a verified identity and only "
                "what the invoice shows. Say exactly what you refunded."
            ),
            topics=("refund", "charged", "invoice", "bill", "billing", "payment", "money"),
            tools=billing_tools(office),
            handoffs=(GENERAL, TECHNICAL),
            payload_schema=BillingHandoff,
            on_enter=_billing_init(office),
            preconditions=(_needs_account, _refund_needs_identity),
            context=ContextPolicy(mode="filtered"),
            triggers=(_to_technical(),),
        ),
    ], utterances={GENERAL: GENERAL_EXAMPLES})
