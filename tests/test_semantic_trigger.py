"""The semantic trigger: routes by meaning before any model call, stays silent when unsure."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from langchain_core.embeddings import Embeddings

from handoff.agents.content_creation.specialists import EDITOR, RESEARCHER, WRITER, content_creation_agents
from handoff.agents.customer_service.specialists import BILLING, GENERAL, TECHNICAL, customer_service_agents
from handoff.agents.embeddings import OfflineEmbeddings
from handoff.agents.problem_solving.specialists import ANALYST, DESIGNER, IMPLEMENTER, problem_solving_agents
from handoff.agents.sales.specialists import CLOSER, SPECIALIST, sales_agents
from handoff.agents.scripted import ScriptedChatModel
from handoff.agents.spec import AgentSpec
from handoff.agents.triggers import (
    ClassifierTrigger,
    KeywordTrigger,
    SemanticTrigger,
    TriggerContext,
    bind_semantic_routes,
    first_firing,
    semantic_routing,
)
from handoff.graphs.builder import build_handoff_graph
from handoff.graphs.customer_service import build_customer_service_graph
from handoff.graphs.session import HandoffSession
from handoff.monitoring.report import conversation_report
from tests.helpers import agents_in, compile_memory

DOMAINS: dict[str, Callable[[], list[AgentSpec]]] = {
    "customer-service": customer_service_agents, "content-creation": content_creation_agents,
    "problem-solving": problem_solving_agents, "sales": sales_agents,
}

# Written for this test, in the words people use; none is among the declared examples (checked below).
PARAPHRASES = [
    ("customer-service", GENERAL, "my home network falls over every couple of hours", TECHNICAL),
    ("customer-service", GENERAL, "the modem lost its signal after the storm last night", TECHNICAL),
    ("customer-service", GENERAL, "you took two payments from my bank this month", BILLING),
    ("customer-service", GENERAL, "why has my monthly charge gone up without warning?", BILLING),
    ("customer-service", TECHNICAL, "separately, there's a fee on my statement I never agreed to", BILLING),
    ("customer-service", BILLING, "oh and the wifi has been cutting out all week as well", TECHNICAL),
    ("content-creation", RESEARCHER, "great notes, now turn them into a proper blog article", WRITER),
    ("content-creation", WRITER, "it's finished, please pass it on for an editorial check", EDITOR),
    ("content-creation", EDITOR, "return it to the author so those problems get corrected", WRITER),
    ("problem-solving", ANALYST, "right, so how do we resolve this?", DESIGNER),
    ("problem-solving", DESIGNER, "agreed, put that change into production", IMPLEMENTER),
    ("problem-solving", IMPLEMENTER, "that cannot be done then, so what other approach do we have?", DESIGNER),
    ("sales", SPECIALIST, "what kind of budget would we need for twenty users?", CLOSER),
    ("sales", CLOSER, "before signing, can it connect to our existing single sign-on provider?", SPECIALIST),
]

NOT_FOR_ANOTHER_AGENT = [
    ("customer-service", GENERAL, "good afternoon, could you help me with something?"),
    ("customer-service", GENERAL, "I need to update the phone number you have for me"),
    ("customer-service", TECHNICAL, "I've switched it off and on again already"),
    ("customer-service", BILLING, "which invoice was that again?"),
    ("content-creation", RESEARCHER, "are there any studies from this year?"),
    ("content-creation", EDITOR, "does the headline fit the style rules?"),
    ("problem-solving", ANALYST, "what do the error logs show for the payments service?"),
    ("sales", SPECIALIST, "does the mobile app work offline?"),
    ("sales", CLOSER, "please send over the order form"),
]

@pytest.fixture(autouse=True)
def _semantic_triggers_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite builds graphs without semantic triggers (tests/conftest.py); these tests are about them."""
    monkeypatch.setenv("HANDOFF_SEMANTIC_TRIGGERS", "1")


ACKNOWLEDGEMENTS = ["ok", "thanks!", "yes please", "alright then", "no", "got it, thank you", "hmm"]


def bound(domain: str) -> dict[str, AgentSpec]:
    return {spec.name: spec for spec in DOMAINS[domain]()}


def semantic_request(spec: AgentSpec, message: str):
    return first_firing([t for t in spec.triggers if isinstance(t, SemanticTrigger)],
                        TriggerContext(source=spec.name, message=message, case_file={}))


@pytest.mark.parametrize(("domain", "source", "message", "target"), PARAPHRASES)
def test_routes_paraphrases_that_are_not_among_its_examples(domain: str, source: str, message: str,
                                                            target: str) -> None:
    spec = bound(domain)[source]
    examples = {e.lower() for t in spec.triggers if isinstance(t, SemanticTrigger) for e in t.texts()}
    assert message.lower() not in examples
    request = semantic_request(spec, message)
    assert request is not None and request.target == target
    assert request.trigger == "semantic" and request.trigger_name
    assert request.score is not None and 0 < request.score <= 1


@pytest.mark.parametrize(("domain", "source", "message"), NOT_FOR_ANOTHER_AGENT)
def test_stays_silent_when_the_message_is_for_the_agent_already_answering(domain: str, source: str,
                                                                           message: str) -> None:
    assert semantic_request(bound(domain)[source], message) is None


@pytest.mark.parametrize("domain", sorted(DOMAINS))
def test_acknowledgements_never_hand_over(domain: str) -> None:
    for spec in bound(domain).values():
        for reply in ACKNOWLEDGEMENTS:
            assert semantic_request(spec, reply) is None, (spec.name, reply)


def test_stays_silent_below_its_threshold_and_its_margin() -> None:
    embeddings = OfflineEmbeddings()
    examples = ("my internet connection keeps dropping", "the wifi is very slow")
    message = "the broadband cuts out every evening"

    def trigger(name: str, target: str, **kw) -> SemanticTrigger:
        return SemanticTrigger(name=name, target=target, reason="r", examples=examples, embeddings=embeddings, **kw)

    ctx = TriggerContext(source="desk", message=message, case_file={})
    sure = trigger("fault", "tech")
    assert sure.request(ctx) is not None
    score = sure.router.scores(message)["fault"]
    assert trigger("strict", "tech", threshold=round(score + 0.01, 2)).request(ctx) is None
    assert trigger("loose", "tech", threshold=round(score - 0.01, 2)).request(ctx) is not None
    # Two targets that sound the same: neither leads the other by the margin, so neither fires.
    assert first_firing([trigger("a", "tech"), trigger("b", "other")], ctx) is None
    assert first_firing([trigger("a", "tech", margin=0), trigger("b", "other", margin=0)], ctx) is not None


def test_staying_competes_as_a_route() -> None:
    embeddings = OfflineEmbeddings()
    fault = SemanticTrigger(name="fault", target="tech", reason="r", embeddings=embeddings,
                            examples=("my internet keeps dropping",))
    agents = bind_semantic_routes([
        AgentSpec(name="desk", title="Desk", description="First contact.", instructions="-", handoffs=("tech",),
                  triggers=(fault,)),
        AgentSpec(name="tech", title="Tech", description="Fixes connections.", instructions="-"),
    ], utterances={"desk": ("my internet keeps dropping, can you tell me your opening hours?",)})
    ctx = TriggerContext(source="desk", message="my internet keeps dropping, what are your opening hours?",
                         case_file={})
    assert isinstance(agents[0].triggers[0], SemanticTrigger)
    assert fault.request(ctx) is not None  # alone, the route wins
    assert first_firing(agents[0].triggers, ctx) is None  # the desk's own profile is closer


def test_rules_run_before_semantic_triggers_and_classifiers_after() -> None:
    embeddings = OfflineEmbeddings()
    semantic = SemanticTrigger(name="meaning", target="b", reason="r", embeddings=embeddings,
                               examples=("I want my money back",))
    rule = KeywordTrigger(name="rule", target="c", reason="r", keywords=("refund",))
    classifier = ClassifierTrigger(name="classifier", target="d", reason="r", classifier=lambda _: ("d", 0.99))
    ctx = TriggerContext(source="a", message="I would like a refund of my money", case_file={})
    assert first_firing([classifier, semantic, rule], ctx).trigger_name == "rule"
    assert first_firing([classifier, semantic], ctx).trigger_name == "meaning"
    classified = first_firing([classifier], ctx)
    assert classified.trigger == "classifier" and classified.score == 0.99


class CountingEmbeddings(Embeddings):
    """The offline embeddings, counting calls."""

    def __init__(self) -> None:
        self.inner = OfflineEmbeddings()
        self.documents = self.queries = 0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.documents += 1
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        self.queries += 1
        return self.inner.embed_query(text)


def test_a_semantic_handoff_spends_no_model_call_and_records_trigger_and_score() -> None:
    embeddings = CountingEmbeddings()
    model = ScriptedChatModel(scripts={TECHNICAL: ["Technical here."] * 2, BILLING: ["Billing here."]})
    with semantic_routing(embeddings=embeddings):
        graph = compile_memory(build_customer_service_graph(model=model))
    session = HandoffSession(graph)
    first = session.send("Account ACC-1001: the connection falls over every few minutes")
    second = session.send("also there's a payment taken twice from my card")

    assert agents_in(first.path) == [TECHNICAL] and agents_in(second.path) == [BILLING]
    assert model.calls_by(GENERAL) == []
    fault, money = (r.request for r in second.handoffs)
    assert (fault.trigger, fault.trigger_name, money.trigger) == ("semantic", "sounds_like_a_fault", "semantic")
    assert fault.payload["account_id"] == "ACC-1001" and 0 < fault.score <= 1
    # Route vectors once per graph (General's and Technical's routers), one query per semantic turn.
    assert (embeddings.documents, embeddings.queries) == (2, 2)
    steps = conversation_report(graph.checkpointer, graph.store, session.thread_id).steps
    assert [(s.trigger_name, s.score) for s in steps] == [("sounds_like_a_fault", fault.score),
                                                          ("sounds_like_money", money.score)]


def test_a_semantic_handoff_is_validated_by_the_gate_like_any_other() -> None:
    model = ScriptedChatModel(scripts={GENERAL: ["Which account is it?"]})
    graph = compile_memory(build_customer_service_graph(model=model))
    result = HandoffSession(graph).send("the connection falls over every few minutes")

    record = result.handoffs[-1]
    assert record.request.trigger == "semantic" and record.outcome == "rejected"
    assert record.rejection.code == "invalid_payload" and "account_id" in record.rejection.message
    assert agents_in(result.path) == [GENERAL] and result.reply == "Which account is it?"


def test_semantic_triggers_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    def semantic_of(agents: list[AgentSpec]) -> list[str]:
        return [t.name for a in agents for t in a.triggers if isinstance(t, SemanticTrigger)]

    assert "sounds_like_a_fault" in semantic_of(customer_service_agents())
    with semantic_routing(enabled=False):
        assert semantic_of(customer_service_agents()) == []
    monkeypatch.setenv("HANDOFF_SEMANTIC_TRIGGERS", "0")
    assert semantic_of(customer_service_agents()) == []
    assert [t.name for t in customer_service_agents()[1].triggers] == ["money_words"]  # the rule stays


def test_a_router_refuses_what_cannot_be_compared() -> None:
    def agent(name: str, *triggers: SemanticTrigger) -> AgentSpec:
        return AgentSpec(name=name, title=name, description=name, instructions="-",
                         handoffs=tuple(t.target for t in triggers), triggers=triggers)

    one, two = OfflineEmbeddings(), OfflineEmbeddings()
    mixed = (SemanticTrigger(name="x", target="beta", reason="r", examples=("x y",), embeddings=one),
             SemanticTrigger(name="y", target="gamma", reason="r", examples=("x y",), embeddings=two))
    with pytest.raises(ValueError, match="different embeddings"):
        bind_semantic_routes([agent("alpha", *mixed), agent("beta"), agent("gamma")])
    with pytest.raises(ValueError, match="no description and no examples"):
        first_firing([SemanticTrigger(name="empty", target="beta", reason="r")],
                     TriggerContext(source="alpha", message="hello there", case_file={}))


def test_a_graph_of_semantic_triggers_declared_without_binding_still_routes() -> None:
    model = ScriptedChatModel(scripts={"billing_desk": ["Billing desk here."]})
    trigger = SemanticTrigger(name="money", target="billing_desk", reason="money matters",
                              examples=("I was charged twice", "I want a refund"))
    agents = [AgentSpec(name="front", title="Front", description="front desk", instructions="-",
                        handoffs=("billing_desk",), triggers=(trigger,)),
              AgentSpec(name="billing_desk", title="Billing", description="money", instructions="-")]
    result = HandoffSession(compile_memory(build_handoff_graph(agents, default_agent="front", model=model))).send(
        "you took my payment two times")
    assert agents_in(result.path) == ["billing_desk"] and model.calls_by("front") == []
