"""The engineering team's in-repo data: service metrics, known causes, plan templates, constraints.

The analyst reads metrics and finds causes, the designer picks plans from the
catalogue, and the implementer checks each plan against what the production
environment allows today (``ENVIRONMENT``), which the designer does not see
until a plan comes back as infeasible.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ServiceMetrics(BaseModel):
    """A service's current health."""

    model_config = ConfigDict(frozen=True)

    service: str
    p95_ms: int
    slo_ms: int
    error_rate_pct: float
    db_cpu_pct: int
    recent_change: str


class RootCause(BaseModel):
    """What the analysis found, with the evidence."""

    model_config = ConfigDict(frozen=True)

    code: str
    summary: str
    evidence: str


class Plan(BaseModel):
    """A solution template: what to do and which capabilities it needs."""

    model_config = ConfigDict(frozen=True)

    plan_id: str
    root_cause: str
    title: str
    steps: tuple[str, ...]
    needs: tuple[str, ...]


METRICS = {
    m.service: m
    for m in (
        ServiceMetrics(service="checkout", p95_ms=2400, slo_ms=800, error_rate_pct=0.4, db_cpu_pct=92,
                       recent_change="release 2.14 added an order-history panel to the checkout page"),
        ServiceMetrics(service="login", p95_ms=350, slo_ms=500, error_rate_pct=3.1, db_cpu_pct=35,
                       recent_change="traffic doubled after the spring campaign"),
        ServiceMetrics(service="search", p95_ms=180, slo_ms=300, error_rate_pct=0.1, db_cpu_pct=20,
                       recent_change="none in the last week"),
    )
}

CAUSES = {
    "checkout": RootCause(
        code="missing_index",
        summary="the order-history query scans the whole orders table: orders.customer_id has no index",
        evidence="slow-query log: SELECT * FROM orders WHERE customer_id = ? takes 1.9 s, 4.1M rows read",
    ),
    "login": RootCause(
        code="pool_exhausted",
        summary="the session store's connection pool (20) is exhausted at peak traffic",
        evidence="pool wait time p95 1.2 s; 3.1% of logins time out waiting for a connection",
    ),
}

PLANS = {
    p.plan_id: p
    for p in (
        Plan(plan_id="PLAN-401", root_cause="missing_index",
             title="Add an index on orders(customer_id, created_at)",
             steps=("write the migration", "build the index concurrently", "verify the query plan"),
             needs=("db_migration",)),
        Plan(plan_id="PLAN-402", root_cause="missing_index",
             title="Page the order-history query (20 rows) and cache it for 60 s",
             steps=("limit the query to the latest 20 orders", "cache per customer for 60 s",
                    "deploy behind a feature flag"),
             needs=("app_deploy",)),
        Plan(plan_id="PLAN-403", root_cause="missing_index",
             title="Serve order history from a read replica",
             steps=("provision a replica", "route history reads to it"),
             needs=("read_replica",)),
        Plan(plan_id="PLAN-411", root_cause="pool_exhausted",
             title="Raise the session pool to 60 and add a 200 ms acquire timeout",
             steps=("change the pool settings", "deploy", "watch pool wait time"),
             needs=("app_deploy",)),
    )
}

ENVIRONMENT: dict[str, str | None] = {
    "db_migration": "the orders database is under a change freeze until 2026-12-01 (quarter-end close)",
    "read_replica": "no read replica is provisioned and this quarter's budget has no room for one",
    "app_deploy": None,
}
"""Capability -> why it is blocked today, or None when it is available."""


def service_in(text: str) -> str | None:
    """The known service named in ``text``, or None.

    Args:
        text: Free text, e.g. the user's report.
    """
    lowered = text.lower()
    return next((s for s in METRICS if s in lowered), None)


def blockers(plan: Plan) -> list[str]:
    """Why ``plan`` cannot be carried out today, one line per blocked capability.

    Args:
        plan: A plan from PLANS.
    """
    return [f"{need}: {why}" for need in plan.needs if (why := ENVIRONMENT.get(need, "unknown capability"))]


def candidate_plans(root_cause: str, *, rejected: list[str], known_blocked: list[str]) -> list[Plan]:
    """Plans for ``root_cause`` that were not rejected and need nothing known to be blocked.

    Args:
        root_cause: A root-cause code, e.g. ``missing_index``.
        rejected: Plan ids that came back as infeasible.
        known_blocked: Constraint lines (``capability: why``) learned so far.
    """
    blocked = {line.split(":", 1)[0] for line in known_blocked}
    return [p for p in PLANS.values()
            if p.root_cause == root_cause and p.plan_id not in rejected and not blocked & set(p.needs)]
