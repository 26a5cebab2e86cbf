"""Embeddings for the semantic triggers: the offline static model, and OpenAIEmbeddings on a local server."""

from __future__ import annotations

import socket

import numpy as np
import pytest
from langchain_openai import OpenAIEmbeddings

from handoff.agents import embeddings as emb
from handoff.agents.embeddings import MAX_EMBED_CHARS, OfflineEmbeddings, make_embeddings
from handoff.agents.settings import ModelSettings
from handoff.agents.triggers import SemanticTrigger, TriggerContext, first_firing
from tests.support.embeddings_stub import EmbeddingsStub


def cosine(a: list[float], b: list[float]) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_offline_embeddings_load_and_work_with_sockets_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args, **kwargs):
        raise OSError("network disabled by the test")

    emb._wordllama.cache_clear()  # load the weights and the tokenizer again, now without a network
    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)

    embedder = OfflineEmbeddings()
    fault, outage, refund = embedder.embed_documents(
        ["my internet keeps dropping", "the broadband connection is down again", "I want my money back"])

    assert len(fault) == OfflineEmbeddings.dimensions == 256
    assert np.isclose(np.linalg.norm(fault), 1.0, atol=1e-5)
    assert cosine(fault, outage) > cosine(fault, refund)
    assert embedder.embed_query("the broadband connection is down again") == outage


def test_text_is_bounded_before_embedding() -> None:
    embedder = OfflineEmbeddings()
    head = "my internet keeps dropping " * (MAX_EMBED_CHARS // 20)
    assert embedder.embed_query(head + " refund invoice charged " * 500) == embedder.embed_query(head)


def test_a_text_without_tokens_has_a_zero_vector_and_the_cache_is_bounded() -> None:
    embedder = OfflineEmbeddings(cache_size=2)
    assert not any(embedder.embed_query(""))
    for text in ("one text", "another text", "a third text"):
        embedder.embed_query(text)
    assert len(embedder._cache) == 2 and "one text" not in embedder._cache


def test_the_offline_model_is_the_default_without_a_real_model() -> None:
    embedder = make_embeddings(ModelSettings())
    assert isinstance(embedder, OfflineEmbeddings)
    assert "offline" in embedder.label


def test_openai_embeddings_from_the_model_settings_against_a_local_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HANDOFF_EMBEDDING_MODEL", "local-embedder")
    with EmbeddingsStub().running() as stub:
        embedder = make_embeddings(ModelSettings(OPENAI_BASE_URL=stub.base_url))
        assert isinstance(embedder, OpenAIEmbeddings)
        vector = embedder.embed_query("my wifi keeps disconnecting")

    assert [r["model"] for r in stub.embedding_requests] == ["local-embedder"]
    assert stub.embedding_requests[0]["input"] == ["my wifi keeps disconnecting"]  # text, not token ids
    assert np.allclose(vector, OfflineEmbeddings().embed_query("my wifi keeps disconnecting"), atol=1e-6)


def test_a_semantic_trigger_routes_through_openai_embeddings() -> None:
    with EmbeddingsStub().running() as stub:
        embedder = make_embeddings(ModelSettings(OPENAI_BASE_URL=stub.base_url))
        trigger = SemanticTrigger(name="fault", target="tech", reason="a fault", embeddings=embedder,
                                  description="Diagnoses connection faults and outages.",
                                  examples=("my internet keeps dropping", "the router shows a red light"))
        request = first_firing([trigger], TriggerContext(source="desk", message="the broadband cuts out every night",
                                                         case_file={}))
    assert request is not None and request.target == "tech" and request.trigger == "semantic"
    assert request.score is not None and request.score >= trigger.threshold


def test_an_embeddings_server_that_fails_leaves_the_decision_to_the_model() -> None:
    with EmbeddingsStub().running() as stub:
        stub.fail = True
        embedder = OpenAIEmbeddings(model="x", api_key="not-needed", base_url=stub.base_url, max_retries=0,
                                    check_embedding_ctx_length=False)
        trigger = SemanticTrigger(name="fault", target="tech", reason="a fault", embeddings=embedder,
                                  examples=("my internet keeps dropping",))
        ctx = TriggerContext(source="desk", message="my internet keeps dropping", case_file={})
        assert first_firing([trigger], ctx) is None
        stub.fail = False
        assert first_firing([trigger], ctx) is not None  # the route vectors are computed once it answers
    assert len(stub.embedding_requests) >= 3


def test_every_offline_router_and_judge_shares_one_embedder() -> None:
    assert make_embeddings(ModelSettings()) is make_embeddings(ModelSettings()) is emb.offline_embeddings()


def test_a_turn_embeds_the_users_message_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The person judge and the semantic router read one embedding of the message: same embedder,
    same text (ids and numbers left out by both)."""
    from langchain_core.messages import HumanMessage
    from langgraph.checkpoint.memory import InMemorySaver

    from handoff.agents.customer_service.back_office import BackOffice
    from handoff.agents.scripted import ScriptedChatModel
    from handoff.graphs.customer_service import build_customer_service_graph

    shared = emb.offline_embeddings()
    encoded: list[str] = []
    tokenizer = shared.tokenizer

    class Counting:
        def encode(self, text: str, **kwargs: object) -> object:
            encoded.append(text)
            return tokenizer.encode(text, **kwargs)

    graph = build_customer_service_graph(model=ScriptedChatModel(default="Noted."), office=BackOffice()).compile(
        checkpointer=InMemorySaver())
    graph.invoke({"messages": [HumanMessage("hello there")]}, {"configurable": {"thread_id": "warm"}})
    monkeypatch.setattr(shared, "tokenizer", Counting())
    message = "Since 7 pm on 2026-11-29 the router on ACC-1001 keeps dropping my video calls, wobbly lights"
    graph.invoke({"messages": [HumanMessage(message)]}, {"configurable": {"thread_id": "t"}})

    about = [text for text in encoded if "wobbly lights" in text]
    assert len(about) == 1, encoded
    assert not any(ch.isdigit() for ch in about[0])
