"""A synchronous run of a handoff graph that streams nothing as it happens keeps its thread pool small
(graphs/compiled.py ``SYNC_WORKERS``), unless the caller's config says otherwise; a run that streams
as it happens (``custom``/``messages`` modes, as the CLI's) keeps LangGraph's pool, in which a
waiter thread holds a worker for the whole run (with one worker, such a run would wait forever)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.pregel import _executor

from handoff.agents.customer_service.back_office import BackOffice
from handoff.graphs.compiled import SYNC_WORKERS
from handoff.graphs.customer_service import build_customer_service_graph
from handoff.graphs.session import HandoffSession
from tests.support.long_conversation import scripted_model, user_lines


class WhereSaved(InMemorySaver):
    """An in-memory saver noting the thread of every save."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: set[int] = set()

    def put(self, *args: Any, **kwargs: Any) -> Any:
        self.threads.add(threading.get_ident())
        return super().put(*args, **kwargs)

    def put_writes(self, *args: Any, **kwargs: Any) -> None:
        self.threads.add(threading.get_ident())
        super().put_writes(*args, **kwargs)


def _graph(saver: InMemorySaver) -> Any:
    return build_customer_service_graph(model=scripted_model(), office=BackOffice()).compile(checkpointer=saver)


def test_a_sync_turn_saves_in_the_background_on_at_most_its_few_workers() -> None:
    saver = WhereSaved()
    graph = _graph(saver)
    config = {"configurable": {"thread_id": "w"}}
    for line in user_lines(6, every=2):  # handoff turns run several steps
        saver.threads.clear()
        graph.invoke({"messages": [HumanMessage(line.text)]}, config)
        assert 1 <= len(saver.threads) <= SYNC_WORKERS, saver.threads
        assert threading.get_ident() not in saver.threads, "the saves stay off the caller's thread"


def test_a_run_that_streams_as_it_happens_keeps_langgraphs_pool_and_finishes(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _spy(monkeypatch)
    session = HandoffSession(_graph(InMemorySaver()), "s")
    tokens: list[str] = []
    for line in user_lines(4, every=2):
        assert session.send(line.text).reply
    assert seen and set(seen) == {None}
    seen.clear()
    streaming = HandoffSession(_graph(InMemorySaver()), "t")
    assert streaming.send("hello", on_token=tokens.append).reply
    assert seen and set(seen) == {None}


@pytest.mark.parametrize("options", [{"stream_mode": "custom"}, {"stream_mode": ["updates", "messages"]},
                                     {"print_mode": "custom"}, {"subgraphs": True}])
def test_every_way_of_streaming_as_it_happens_keeps_langgraphs_pool(
    monkeypatch: pytest.MonkeyPatch, options: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    seen = _spy(monkeypatch)  # capsys: print_mode prints the run
    for _ in _graph(InMemorySaver()).stream({"messages": [HumanMessage("hello")]},
                                            {"configurable": {"thread_id": "e"}}, **options):
        pass
    assert seen and set(seen) == {None}


def _spy(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    seen: list[Any] = []
    make = _executor.get_executor_for_config

    def spy(config: Any) -> Any:
        seen.append(config.get("max_concurrency"))
        return make(config)

    monkeypatch.setattr(_executor, "get_executor_for_config", spy)
    return seen


@pytest.mark.parametrize(("asked", "used"), [(None, SYNC_WORKERS), (3, 3)])
def test_the_callers_max_concurrency_is_kept(monkeypatch: pytest.MonkeyPatch, asked: int | None, used: int) -> None:
    seen = _spy(monkeypatch)
    config: dict[str, Any] = {"configurable": {"thread_id": "c"}}
    if asked is not None:
        config["max_concurrency"] = asked
    _graph(InMemorySaver()).invoke({"messages": [HumanMessage("hello")]}, config)
    assert seen and set(seen) == {used}
    assert "max_concurrency" not in config or config["max_concurrency"] == asked, "the caller's config is not changed"
