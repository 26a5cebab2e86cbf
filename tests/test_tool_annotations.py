"""A function tool's string annotations are evaluated once, when the graph is built, not on every run.

langchain-core looks for a ``RunnableConfig`` parameter with ``typing.get_type_hints`` on each run of a
function tool; under ``from __future__ import annotations`` (this project's modules, and many users')
that compiled every annotation again on every tool call."""

from __future__ import annotations

import builtins
import typing
from types import SimpleNamespace
from typing import Annotated, Any

import pytest
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import InjectedToolArg, tool
from langgraph.checkpoint.memory import InMemorySaver

from handoff.agents.customer_service.back_office import BackOffice
from handoff.agents.scripted import ScriptedChatModel, calls, tool_call
from handoff.agents.tooling import ToolContext, resolve_annotations
from handoff.graphs.customer_service import build_customer_service_graph


def test_a_tool_call_through_the_graph_evaluates_no_annotation(monkeypatch: pytest.MonkeyPatch) -> None:
    model = ScriptedChatModel(scripts={"general_support": [
        calls(tool_call("lookup_account", {"account_id": "ACC-1001"})), "Found it."]})
    graph = build_customer_service_graph(model=model, office=BackOffice()).compile(checkpointer=InMemorySaver())
    evaluated: list[str] = []
    real = builtins.compile

    def counting(source: Any, filename: Any, mode: str, *args: Any, **kwargs: Any) -> Any:
        if mode == "eval":  # how typing evaluates an annotation given as a string
            evaluated.append(str(source))
        return real(source, filename, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "compile", counting)
    out = graph.invoke({"messages": [HumanMessage("What plan is ACC-1001 on?")]}, {"configurable": {"thread_id": "t"}})

    results = [m for m in out["messages"] if isinstance(m, ToolMessage)]
    assert [m.name for m in results] == ["lookup_account"]
    assert "ACC-1001" in str(results[0].content) and "error" not in str(results[0].content)
    assert evaluated == [], evaluated


def test_annotations_resolve_to_what_get_type_hints_gives() -> None:
    @tool
    def note(text: str, ctx: Annotated[ToolContext, InjectedToolArg]) -> str:
        """Note a text."""
        return f"{ctx.thread_id}: {text}"

    before = typing.get_type_hints(note.func, include_extras=True)
    assert all(isinstance(a, str) for a in note.func.__annotations__.values())
    resolve_annotations(note)
    assert note.func.__annotations__ == before
    context = ToolContext(thread_id="t-1", agent="a", case_file={})
    assert note.invoke({"text": "hi", "ctx": context}) == "t-1: hi"


def test_a_function_whose_annotations_do_not_resolve_is_left_as_it_is() -> None:
    def odd(text: str, extra: NotDefinedAnywhere = None) -> str:  # type: ignore[name-defined]  # noqa: F821
        return text

    given = dict(odd.__annotations__)
    resolve_annotations(SimpleNamespace(func=odd, coroutine=None))  # type: ignore[arg-type]
    assert odd.__annotations__ == given
