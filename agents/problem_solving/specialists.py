"""Problem solving: Analyst -> Solution Designer -> Implementer, and Implementer -> Designer.

The implementer checks a plan against what production allows on arrival.
When it cannot be built, the implementer hands it back to the designer with
``infeasible_plan_id`` and ``infeasible_reason`` (typed payload fields); the
constraint it learned stays in the case file, so the next plan avoids it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from langchain_core.tools import BaseTool, InjectedToolArg, tool
from pydantic import Field, model_validator

from handoff.agents.ledger import LedgerHome
from handoff.agents.problem_solving.data import (
    CAUSES,
    ENVIRONMENT,
    METRICS,
    PLANS,
    blockers,
    candidate_plans,
    service_in,
)
from handoff.agents.spec import AgentSpec, HandoffPayload, InitContext
from handoff.agents.tooling import ToolContext
from handoff.agents.triggers import KeywordTrigger, SemanticTrigger, TriggerContext, bind_semantic_routes
from handoff.state import CaseFile, InitResult

CHANGE_IDS = {plan_id: f"CHG-5{plan_id[-2:]}" for plan_id in PLANS}
"""One production change per plan, so a change id is derived from its plan."""
if len(set(CHANGE_IDS.values())) != len(CHANGE_IDS):
    raise ValueError("two plans of the catalogue would share a change id; give CHANGE_IDS another scheme")

ANALYST = "analyst"
DESIGNER = "solution_designer"
IMPLEMENTER = "implementer"
PLAN_ID = r"^PLAN-\d+$"


class ProblemCaseFile(CaseFile):
    """What the team knows about the problem, the plans tried and the constraints found."""

    service: str | None = None
    metrics: str | None = None
    root_cause: str | None = None
    root_cause_code: str | None = None
    plan_id: str | None = Field(default=None, pattern=PLAN_ID)
    plan_title: str | None = None
    rejected_plan_ids: list[Annotated[str, Field(pattern=PLAN_ID)]] = Field(default_factory=list)
    constraints: list[str] = Field(default_factory=list)
    feasibility: Literal["feasible", "infeasible"] | None = None
    infeasible_plan_id: str | None = Field(default=None, pattern=PLAN_ID)
    infeasible_reason: str | None = None
    change_id: str | None = Field(default=None, pattern=r"^CHG-\d+$")


class DesignHandoff(HandoffPayload):
    """The designer needs the root cause; a hand-back names the infeasible plan and why."""

    root_cause: str = Field(min_length=3, description="What the analysis found.")
    infeasible_plan_id: str | None = Field(
        default=None, pattern=PLAN_ID, description="On a hand-back: the plan that cannot be built."
    )
    infeasible_reason: str | None = Field(
        default=None, min_length=5, description="On a hand-back: why that plan cannot be built."
    )

    @model_validator(mode="after")
    def _plan_and_reason_together(self) -> DesignHandoff:
        if bool(self.infeasible_plan_id) != bool(self.infeasible_reason):
            raise ValueError("a hand-back names both infeasible_plan_id and infeasible_reason")
        return self


class ImplementationHandoff(HandoffPayload):
    """The implementer needs the plan to carry out."""

    plan_id: str = Field(pattern=PLAN_ID, description="The plan to implement.")


def analyst_tools() -> tuple[BaseTool, ...]:
    @tool(response_format="content_and_artifact")
    def query_metrics(service: str) -> tuple[str, dict[str, Any]]:
        """Read a service's latency, errors and database load. Use when: slow, latency, errors, timeouts, metrics"""
        name = service_in(service)
        if name is None:
            return f"no such service; known: {', '.join(METRICS)}", {}
        m = METRICS[name]
        text = (f"{name}: p95 {m.p95_ms} ms (SLO {m.slo_ms} ms), errors {m.error_rate_pct}%, "
                f"database CPU {m.db_cpu_pct}%; recent change: {m.recent_change}")
        return text, {"service": name, "metrics": text}

    @tool(response_format="content_and_artifact")
    def find_root_cause(service: str, ctx: Annotated[ToolContext, InjectedToolArg]) -> tuple[str, dict[str, Any]]:
        """Correlate logs and recent changes to find the root cause. Use when: analyse, analyze, cause, why, investigate"""
        name = service_in(service) or ctx.case_file.get("service")
        cause = CAUSES.get(str(name))
        if cause is None:
            return f"no root cause found for {name or 'an unnamed service'}", {}
        return (f"root cause ({cause.code}): {cause.summary}. Evidence: {cause.evidence}",
                {"service": name, "root_cause": cause.summary, "root_cause_code": cause.code})

    return (query_metrics, find_root_cause)


def designer_tools() -> tuple[BaseTool, ...]:
    @tool(response_format="content_and_artifact")
    def propose_plan(root_cause_code: str, ctx: Annotated[ToolContext, InjectedToolArg]) -> tuple[str, dict[str, Any]]:
        """Choose the best plan for the root cause that avoids known constraints. Use when: design, plan, fix, solution"""
        case = ctx.case_file
        options = candidate_plans(str(case.get("root_cause_code") or root_cause_code),
                                  rejected=list(case.get("rejected_plan_ids") or []),
                                  known_blocked=list(case.get("constraints") or []))
        if not options:
            return "no plan left that avoids the known constraints; the problem needs a decision by a person", {}
        plan = options[0]
        return (f"{plan.plan_id}: {plan.title}. Steps: {'; '.join(plan.steps)}. Needs: {', '.join(plan.needs)}",
                {"plan_id": plan.plan_id, "plan_title": plan.title})

    @tool
    def list_options(root_cause_code: str, ctx: Annotated[ToolContext, InjectedToolArg]) -> str:
        """List every plan template for the root cause with what it needs. Use when: options, compare"""
        code = str(ctx.case_file.get("root_cause_code") or root_cause_code)
        rejected = set(ctx.case_file.get("rejected_plan_ids") or [])
        lines = [f"{p.plan_id} {p.title} (needs {', '.join(p.needs)})" + (" [rejected]" if p.plan_id in rejected else "")
                 for p in PLANS.values() if p.root_cause == code]
        return "; ".join(lines) or f"no plan templates for {code!r}"

    return (propose_plan, list_options)


def implementer_tools(home: LedgerHome) -> tuple[BaseTool, ...]:
    @tool(response_format="content_and_artifact")
    def apply_change(
        plan_id: Annotated[str, Field(pattern=PLAN_ID)], ctx: Annotated[ToolContext, InjectedToolArg]
    ) -> tuple[str, dict[str, Any]]:
        """Carry out a plan in production if nothing blocks it. Use when: implement, deploy, apply, go ahead"""
        plan = PLANS.get(plan_id)
        if plan is None:
            return f"error: no plan {plan_id!r}", {}
        blocked = blockers(plan)
        if blocked:
            return f"cannot apply {plan_id}: {'; '.join(blocked)}", {"feasibility": "infeasible"}
        # Production is one for every conversation: a plan is applied once, whoever asks again
        # (a retried step, a second worker, another conversation) is told it already was.
        record, new = home.ledger(ctx.store).record_once(
            "change", f"change:{plan_id}", {"plan_id": plan_id, "title": plan.title, "thread_id": ctx.thread_id},
            record_id=CHANGE_IDS[plan_id])
        verb = "applied" if new else "was already applied"
        return (f"{record.record_id} {verb}: {plan.title} ({'; '.join(plan.steps)})",
                {"change_id": record.record_id, "feasibility": "feasible"})

    @tool
    def check_constraints() -> str:
        """List what production allows today. Use when: constraint, constraints, freeze, blocked"""
        return "; ".join(f"{need}: {why or 'available'}" for need, why in ENVIRONMENT.items())

    return (apply_change, check_constraints)


def _open_design(ctx: InitContext) -> InitResult:
    """Designer's initialisation: the root cause, or the plan that came back and why."""
    payload = ctx.payload_as(DesignHandoff)
    rejected = payload.infeasible_plan_id
    if rejected:
        return InitResult(
            action="reopen_design",
            summary=f"{rejected} came back as infeasible: {payload.infeasible_reason}",
            case_file_updates={"rejected_plan_ids": [rejected]},
        )
    options = candidate_plans(str(ctx.case_file.get("root_cause_code")), rejected=[], known_blocked=[])
    return InitResult(action="open_design",
                      summary=f"root cause: {payload.root_cause}; {len(options)} plan templates fit it")


def _check_feasibility(ctx: InitContext) -> InitResult:
    """Implementer's initialisation: check the plan against what production allows today."""
    plan_id = ctx.payload_as(ImplementationHandoff).plan_id
    plan = PLANS.get(plan_id)
    blocked = blockers(plan) if plan else [f"{plan_id} is not in the catalogue"]
    if not blocked:
        return InitResult(action="check_feasibility", summary=f"{plan_id} is feasible today",
                          case_file_updates={"feasibility": "feasible"})
    reason = "; ".join(blocked)
    return InitResult(
        action="check_feasibility",
        summary=f"{plan_id} is infeasible: {reason}",
        case_file_updates={"feasibility": "infeasible", "infeasible_plan_id": plan_id,
                           "infeasible_reason": reason, "constraints": blocked},
    )


def needs_root_cause(case_file: dict[str, Any], payload: HandoffPayload) -> str | None:
    """Design starts from an analysed root cause.

    Args:
        case_file: The conversation's case file.
        payload: The validated handoff payload (unused).
    """
    return None if case_file.get("root_cause_code") else "the analysis has not found a root cause yet"


def plan_not_rejected(case_file: dict[str, Any], payload: HandoffPayload) -> str | None:
    """A plan that came back as infeasible is not implemented again.

    Args:
        case_file: The conversation's case file.
        payload: The validated ImplementationHandoff.
    """
    plan_id = getattr(payload, "plan_id", None)
    if plan_id in (case_file.get("rejected_plan_ids") or []):
        return f"{plan_id} was already found infeasible; design another plan"
    return None


def _design_payload(ctx: TriggerContext) -> dict[str, Any]:
    cause = ctx.case_file.get("root_cause")
    return {"root_cause": cause, "summary": f"Root cause: {cause}"} if cause else {}


def _redesign_payload(ctx: TriggerContext) -> dict[str, Any]:
    """Back to design: the root cause, and the plan found infeasible with why, when on file."""
    case = ctx.case_file
    fields = {"root_cause": case.get("root_cause"), "infeasible_plan_id": case.get("infeasible_plan_id"),
              "infeasible_reason": case.get("infeasible_reason")}
    return {k: v for k, v in fields.items() if v}


def _implementation_payload(ctx: TriggerContext) -> dict[str, Any]:
    plan = ctx.case_file.get("plan_id")
    return {"plan_id": plan, "summary": f"Implement {plan}: {ctx.case_file.get('plan_title')}"} if plan else {}


FIX_EXAMPLES = (
    "how do we fix this?",
    "what should we do about it?",
    "come up with a plan to solve it",
    "what are our options now?",
    "is there another way to do this?",
    "we need a different approach",
)
"""Asking for a way to solve the problem (or another one), in the user's own words."""

SHIP_EXAMPLES = (
    "go ahead and implement it",
    "let's ship that plan",
    "deploy the change to production",
    "apply the fix now",
    "start the rollout",
)
"""Agreeing to a plan and asking for it to be carried out."""

ANALYSIS_EXAMPLES = (
    "why is the service so slow?",
    "what is causing these errors?",
    "can you investigate the timeouts?",
    "look at the metrics for me",
)
"""What the Problem Analyst hears, so that staying with it competes with the designer's route."""

IMPLEMENTATION_EXAMPLES = (
    "is anything blocking the deployment?",
    "how far along is the rollout?",
    "does production allow this change today?",
)
"""What the Implementer hears besides "go ahead", so that staying with it competes with going back to design."""


def problem_solving_agents(home: LedgerHome | None = None) -> list[AgentSpec]:
    """The analyst, the solution designer and the implementer.

    Args:
        home: Where changes are recorded when the graph has no store; a new one by default.
    """
    home = home or LedgerHome()
    design_words = ("design", "solution", "fix", "plan", "alternative", "options")
    return bind_semantic_routes([
        AgentSpec(
            name=ANALYST,
            title="Problem Analyst",
            description="Reads metrics and logs to find a problem's root cause.",
            instructions=(
                "You analyse production problems: read the metrics, find the root cause with "
                "evidence, and hand to the solution designer once the cause is known."
            ),
            topics=("slow", "latency", "errors", "analyse", "analyze", "cause", "why", "investigate"),
            tools=analyst_tools(),
            handoffs=(DESIGNER,),
            triggers=(
                KeywordTrigger(name="ready_for_design", target=DESIGNER,
                               reason="The user asked for a solution to the analysed problem.",
                               keywords=design_words, payload=_design_payload),
                SemanticTrigger(name="asks_for_a_fix", target=DESIGNER, examples=FIX_EXAMPLES,
                                reason="The user asked for a solution to the analysed problem.",
                                payload=_design_payload),
            ),
        ),
        AgentSpec(
            name=DESIGNER,
            title="Solution Designer",
            description="Designs a plan that fixes the root cause within known constraints.",
            instructions=(
                "You design fixes. Choose the plan that removes the root cause and avoids every "
                "constraint in the case file; hand it to the implementer when the user agrees."
            ),
            topics=design_words,
            tools=designer_tools(),
            handoffs=(IMPLEMENTER, ANALYST),
            payload_schema=DesignHandoff,
            on_enter=_open_design,
            preconditions=(needs_root_cause,),
            triggers=(
                SemanticTrigger(name="agrees_to_ship", target=IMPLEMENTER, examples=SHIP_EXAMPLES,
                                reason="The user agreed to the plan.", payload=_implementation_payload),
            ),
        ),
        AgentSpec(
            name=IMPLEMENTER,
            title="Implementer",
            description="Checks a plan against production constraints and carries it out.",
            instructions=(
                "You implement plans. If a plan cannot be built, hand it back to the solution "
                "designer with infeasible_plan_id and infeasible_reason; never improvise a new plan."
            ),
            topics=("implement", "deploy", "apply", "rollout", "go ahead"),
            tools=implementer_tools(home),
            handoffs=(DESIGNER,),
            payload_schema=ImplementationHandoff,
            on_enter=_check_feasibility,
            preconditions=(plan_not_rejected,),
            triggers=(
                SemanticTrigger(name="asks_for_another_plan", target=DESIGNER, examples=FIX_EXAMPLES,
                                reason="The plan goes back to design.", payload=_redesign_payload),
            ),
        ),
    ], utterances={ANALYST: ANALYSIS_EXAMPLES, IMPLEMENTER: IMPLEMENTATION_EXAMPLES})
