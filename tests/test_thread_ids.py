"""Thread ids a person would choose (``order.42``, an e-mail) hold a whole conversation in every store.

LangGraph's store refuses a dot in a namespace label, and the journal and the ledger's facts are kept
under the thread id: so it is encoded (``store_label``), the same way on every path, and the ids the
project generates are unchanged by it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_core.messages import HumanMessage

from handoff.agents.customer_service.back_office import BackOffice
from handoff.agents.customer_service.specialists import TECHNICAL
from handoff.agents.ledger import facts_namespace
from handoff.agents.offline import OfflineChatModel
from handoff.graphs.boundary import InputRefused, check_thread_id, store_label
from handoff.graphs.customer_service import build_customer_service_graph
from handoff.graphs.journal import Journal
from handoff.graphs.persistence import open_persistence
from handoff.graphs.session import HandoffSession
from handoff.service.storage import open_service_persistence
from tests.support.postgres import postgres_schema

THREAD_IDS = ("order.42", "dana@example.com")
TURNS = ("Hi, this is Dana, account ACC-1001, postcode 90210.", "My internet keeps dropping every evening.")


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'threads.sqlite'}"
    else:
        with postgres_schema("thread_ids") as url:
            yield url


def check_conversation(graph, thread_id: str, store) -> None:
    """Both user turns are in the thread's transcript, General Support handed the line fault on, and
    the verification was recorded for this conversation."""
    values = graph.get_state({"configurable": {"thread_id": thread_id}}).values
    transcript = Journal(store, thread_id).messages_at(values)
    assert [m.content for m in transcript if isinstance(m, HumanMessage)] == list(TURNS)
    assert values["active_agent"] == TECHNICAL
    assert values["case_file"]["identity_verified"] is True
    assert BackOffice().owner_verified(store, thread_id=thread_id, account_id="ACC-1001")


@pytest.mark.parametrize("thread_id", THREAD_IDS)
def test_a_conversation_on_a_dotted_or_email_thread_id_is_kept_whole(url: str, thread_id: str) -> None:
    with open_persistence(url) as persistence:
        graph = build_customer_service_graph(model=OfflineChatModel(), office=BackOffice()).compile(
            checkpointer=persistence.checkpointer, store=persistence.store)
        session = HandoffSession(graph, thread_id)
        replies = [session.send(text).reply for text in TURNS]
        assert all("[offline model]" in reply for reply in replies)

    with open_persistence(url) as reopened:  # as a restarted process finds it
        graph = build_customer_service_graph(model=OfflineChatModel(), office=BackOffice()).compile(
            checkpointer=reopened.checkpointer, store=reopened.store)
        check_conversation(graph, thread_id, reopened.store)


@pytest.mark.parametrize("thread_id", THREAD_IDS)
def test_the_async_path_keeps_them_too(url: str, thread_id: str) -> None:
    async def converse() -> None:
        async with open_service_persistence(url) as persistence:
            graph = build_customer_service_graph(model=OfflineChatModel(), office=BackOffice()).compile(
                checkpointer=persistence.checkpointer, store=persistence.store)
            session = HandoffSession(graph, thread_id)
            for text in TURNS:
                await session.asend(text)

    asyncio.run(converse())
    with open_persistence(url) as reopened:
        graph = build_customer_service_graph(model=OfflineChatModel(), office=BackOffice()).compile(
            checkpointer=reopened.checkpointer, store=reopened.store)
        check_conversation(graph, thread_id, reopened.store)


def test_two_threads_whose_ids_differ_only_by_encoding_stay_apart() -> None:
    with open_persistence("memory") as persistence:
        graph = build_customer_service_graph(model=OfflineChatModel(), office=BackOffice()).compile(
            checkpointer=persistence.checkpointer, store=persistence.store)
        HandoffSession(graph, "order.42").send(TURNS[0])
        # The session, CLI and service refuse "%" in an id; plain LangGraph config does not check it.
        graph.invoke({"messages": [("user", "hello")]}, {"configurable": {"thread_id": "order%2E42"}})
        first = Journal(persistence.store, "order.42").messages(10)
        second = Journal(persistence.store, "order%2E42").messages(10)
    assert [m.content for m in first if isinstance(m, HumanMessage)] == [TURNS[0]]
    assert [m.content for m in second if isinstance(m, HumanMessage)] == ["hello"]


@pytest.mark.parametrize("generated", [uuid.uuid4().hex, str(uuid.uuid4()), "debug-logs", "t"])
def test_ids_the_project_generates_keep_their_namespace(generated: str) -> None:
    assert store_label(generated) == generated
    assert Journal(None, generated).namespace("transcript") == ("handoff", "transcript", generated)
    assert facts_namespace(generated)[-1] == generated


@pytest.mark.parametrize("thread_id", [*THREAD_IDS, "a", "user+tag@example.co.uk", "tenant:42-b_c", "x" * 128])
def test_the_documented_pattern_takes_usual_ids(thread_id: str) -> None:
    assert check_thread_id(thread_id) == thread_id


@pytest.mark.parametrize(("thread_id", "named"), [
    ("", "empty"), ("x" * 129, "128"), ("has space", "letters, digits"), ("nul\x00", "letters, digits"),
    ("line\nbreak", "letters, digits"), (".hidden", "starting with a letter or digit"),
])
def test_the_documented_pattern_refuses_the_rest_naming_the_rule(thread_id: str, named: str) -> None:
    with pytest.raises(InputRefused, match=named):
        check_thread_id(thread_id)


@pytest.mark.parametrize("bad", ["", "a b", "line\nbreak", "x" * 129, "%2E", "-leading"])
def test_the_session_takes_only_thread_ids_of_the_documented_pattern(bad: str) -> None:
    graph = build_customer_service_graph(model=OfflineChatModel(), office=BackOffice()).compile()
    with pytest.raises(InputRefused, match="thread id"):
        HandoffSession(graph, bad)
