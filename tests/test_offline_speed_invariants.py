"""The offline model's caches and its async path change nothing it says or decides.

Its pure functions of strings are memoised (agents/offline_cache.py) and it answers ``_agenerate``
on the event loop; these tests compare every cached answer with the same computation on emptied
caches, and the async answers with the sync ones, on prompts the graphs really send.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatResult

from handoff.agents import offline
from handoff.agents.offline import OfflineChatModel, decide
from handoff.agents.offline_cache import clear_all
from handoff.agents.offline_lexicon import expanded, groups, matched_groups, plain_words
from handoff.agents.offline_meaning import evidence, hint_words, hits, words_of
from handoff.agents.offline_reading import description_of, hint, title_of
from handoff.graphs.registry import GRAPHS
from handoff.graphs.session import HandoffSession
from tests.helpers import compile_memory

DATASETS = Path(__file__).resolve().parents[1] / "datasets"
EXTRA = (
    "", "   ", "ORDER FORM please, let's sign the contract", "hi", "Hi, what are your hours? hello!",
    "my wifi keeps cutting out and I was charged twice, I want my money back",
    "Can I talk to someone please?", "ACC-1001 INV-2002 acc-9999", "x" * 5000 + " refund",
)
Prompt = tuple[list[BaseMessage], list[dict[str, Any]]]


def texts() -> list[str]:
    lines = [turn["user"] for path in sorted(DATASETS.glob("*.jsonl"))
             for row in map(json.loads, path.read_text().splitlines()) for turn in row["turns"]]
    return [*lines, *EXTRA]


def every_tool() -> list[dict[str, Any]]:
    """Every tool every agent of every graph binds, as the model receives it."""
    return [t["function"] for _, tools in prompts() for t in tools]


class _Recording(OfflineChatModel):
    prompts: list[Prompt] = []

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        self.prompts.append((list(messages), list(kwargs.get("tools") or [])))
        return super()._generate(messages, *args, **kwargs)


_PROMPTS: list[Prompt] = []


def prompts() -> list[Prompt]:
    """The prompts of each graph's registry demo and of a few dataset conversations per graph."""
    if not _PROMPTS:
        model = _Recording(prompts=[])
        datasets = {p.stem: [json.loads(line) for line in p.read_text().splitlines()]
                    for p in DATASETS.glob("*.jsonl")}
        for name, entry in GRAPHS.items():
            conversations = [list(entry.demo)] + [[t["user"] for t in row["turns"]] for row in datasets[name][:12]]
            for lines in conversations:
                session = HandoffSession(compile_memory(entry.build(model=model)))
                for line in lines:
                    session.send(line)
        _PROMPTS.extend(model.prompts)
    return _PROMPTS


def fields(message: BaseMessage) -> dict[str, Any]:
    return message.model_dump(exclude={"id"})


def test_the_phrase_table_gives_the_same_words_cold_and_warm() -> None:
    corpus = texts()
    clear_all()
    cold = [(groups(t), plain_words(t), expanded(t)) for t in corpus]
    clear_all()
    [expanded(t) for t in corpus]  # the caches filled in another order
    warm = [(groups(t), plain_words(t), expanded(t)) for t in corpus]
    uncached = [list(matched_groups.__wrapped__(t)) for t in corpus]  # type: ignore[attr-defined]

    assert cold == warm
    assert [c[0] for c in cold] == uncached
    assert any(c[1] for c in cold) and any(not c[1] for c in cold)  # the corpus has hits and misses


def test_plain_words_keep_table_order_without_repeats() -> None:
    words = plain_words("let's sign the contract and send the order form")

    assert words == list(dict.fromkeys(w for g in groups("let's sign the contract and send the order form")
                                       for w in g))
    assert words.count("order") == 1
    assert expanded("hello there") == "hello there " + " ".join(plain_words("hello there"))


def test_a_returned_list_is_the_callers_own() -> None:
    first = plain_words("my wifi keeps dropping")
    first.append("tampered")
    groups("my wifi keeps dropping").append(("tampered",))
    words = words_of("internet, connection")
    words.append("tampered")

    assert "tampered" not in plain_words("my wifi keeps dropping")
    assert ("tampered",) not in groups("my wifi keeps dropping")
    assert words_of("internet, connection") == ["internet", "connection"]


def test_hint_words_match_at_a_word_start_cold_and_warm() -> None:
    words = ["drop", "internet", "bill", "c++", "a.b"]
    samples = ["dropping internet", "the billing c++ a.b", "airdrop", "internetwork", "axb"]

    clear_all()
    cold = [(hits(words, s), evidence(words, s)) for s in samples]
    warm = [(hits(words, s), evidence(words, s)) for s in samples]

    assert cold == warm
    assert [h for h, _ in cold] == [[w for w in words if re.search(rf"\b{re.escape(w)}", s.lower())]
                                    for s in samples]
    assert cold[2][0] == [] and cold[0][0] == ["drop", "internet"]


def test_tool_descriptions_read_the_same_cold_and_warm() -> None:
    tools = every_tool()
    markers = ("Use when:", "Topics:")

    def read_all() -> list[tuple[Any, ...]]:
        return [(description_of(t), title_of(t), *(hint(t, m) for m in markers),
                 *(hint_words(hint(t, m)) for m in markers)) for t in tools]

    clear_all()
    cold = read_all()
    assert read_all() == cold
    assert any(c[2] for c in cold) and any(c[3] for c in cold)  # own tools and transfers both present
    assert title_of({"name": "transfer_to_x_y", "description": "Hand the conversation to  : z"}) == ""
    assert title_of({"name": "transfer_to_x_y", "description": "no hand-to line"}) == "X Y"


def test_every_prompt_gets_the_same_answer_cold_and_warm() -> None:
    cases = prompts()
    assert len(cases) > 50
    for messages, tools in cases:
        bound = [t["function"] for t in tools]
        clear_all()
        cold = fields(decide(messages, bound))
        assert fields(decide(messages, bound)) == cold


def test_the_async_path_answers_like_the_sync_one_on_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    model = OfflineChatModel()
    threads: list[int] = []
    real = offline.decide

    def watched(messages: Any, tools: Any) -> Any:
        threads.append(threading.get_ident())
        return real(messages, tools)

    monkeypatch.setattr(offline, "decide", watched)

    async def both() -> list[tuple[ChatResult, ChatResult, int]]:
        loop_thread = threading.get_ident()
        return [(model._generate(m, tools=t), await model._agenerate(m, tools=t), loop_thread)
                for m, t in prompts()]

    for sync, native, _ in asyncio.run(both()):
        assert [fields(g.message) for g in native.generations] == [fields(g.message) for g in sync.generations]
    assert set(threads) == {threading.get_ident()}  # asyncio.run's loop runs on this thread: no hop


def test_a_subclass_overriding_generate_is_still_called_on_the_async_path() -> None:
    seen: list[int] = []

    class Held(OfflineChatModel):
        def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
            seen.append(threading.get_ident())
            return super()._generate(messages, *args, **kwargs)

    messages, tools = prompts()[0]
    result = asyncio.run(Held()._agenerate(messages, tools=tools))

    assert fields(result.generations[0].message) == fields(OfflineChatModel()._generate(messages, tools=tools)
                                                            .generations[0].message)
    assert seen and seen[0] != threading.get_ident()  # run in a thread, as a blocking override needs


def test_async_streaming_gives_the_sync_stream() -> None:
    model = OfflineChatModel()

    async def chunks(messages: list[BaseMessage], tools: list[dict[str, Any]]) -> list[AIMessageChunk]:
        return [c.message async for c in model._astream(messages, tools=tools)]  # type: ignore[misc]

    for messages, tools in prompts()[:40]:
        sync = [c.message for c in model._stream(messages, tools=tools)]
        assert [fields(c) for c in asyncio.run(chunks(messages, tools))] == [fields(c) for c in sync]


def _case_blind(text: str) -> list[tuple[str, ...]]:
    """The phrase table read the way it was written: every pattern compiled with ``re.IGNORECASE``."""
    from handoff.agents.offline_lexicon import _GROUPS

    return [tuple(words.split()) for pattern, words in _GROUPS if re.search(pattern, text, re.IGNORECASE)]


def test_the_phrase_table_ignores_case_as_ignorecase_did() -> None:
    """The table matches a lower-cased text with case-sensitive patterns (a third of the cost of
    ``re.IGNORECASE``); every text, shouted, mixed or plain, must find the groups it found before."""
    corpus = texts()
    variants = [v for t in corpus for v in (t, t.upper(), t.swapcase(), t.title())]
    variants += ["MY WIFI KEEPS DROPPING", "NetFlix BUFFERS", "Can I Speak To A Real Person?",
                 "I WANT A REFUND on INV-2002", "Der Router blinkt ÄÖÜ", "ÉCHEC: no SIGNAL",
                 "the \u212a router", "İstanbul office OPENING HOURS"]
    got = [list(matched_groups.__wrapped__(t)) for t in variants]  # type: ignore[attr-defined]
    assert got == [_case_blind(t) for t in variants]
    assert sum(bool(g) for g in got) > len(variants) // 2


def test_every_phrase_pattern_is_written_in_lower_case() -> None:
    """A capital letter in a pattern (outside an escape such as ``\\W``) could never match a lower-cased text."""
    from handoff.agents.offline_lexicon import _GROUPS

    capitals = [p for p, _ in _GROUPS if re.search(r"[A-Z]", re.sub(r"\\.", "", p))]
    assert capitals == []
