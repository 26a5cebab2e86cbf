"""Where the offline model's own CPU goes, and whether a change to it altered a single answer.

The offline model (agents/offline.py) runs every turn of the load benchmark, so its cost per call is
part of a worker's CPU per turn. This harness measures it alone, in one process, on the prompts the
graphs really send it:

- ``record FILE``: play a broad corpus in memory (every conversation in datasets/ on every graph of
  graphs/registry.py, each graph's load-benchmark script and registry demo, and the lines of
  benchmarks/conversation.py) and store each model call's prompt, tools and answer (pickled);
- ``compare OLD NEW``: two recordings must hold the same calls with the same answers (message ids,
  which LangChain makes up per run, left out);
- ``replay FILE``: every recorded prompt through ``decide`` again; each answer must equal the stored one;
- ``time FILE``: CPU per call of ``OfflineChatModel._generate`` over the recorded prompts, in rounds,
  with the spread (``--rounds``; each round starts with the model's caches cleared, then runs warm);
- ``profile FILE``: the same calls under cProfile, the costliest functions by own and total time.

Run with ``python -m benchmarks.profile_offline record /tmp/offline.pkl`` and so on.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pickle
import pstats
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.memory import InMemoryStore

from handoff.agents.offline import OfflineChatModel, decide

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT / "datasets"


@dataclass(frozen=True)
class Call:
    """One model call: what the graph sent, and what the offline model answered."""

    source: str
    messages: list[BaseMessage]
    tools: list[dict[str, Any]]
    answer: dict[str, Any]


def _recording(result: Callable[..., ChatResult]) -> Callable[..., ChatResult]:
    """``agents.offline._result`` (what both the sync and the async path compute), keeping each call."""

    def recorded(messages: list[BaseMessage], tools: list[dict[str, Any]] | None) -> ChatResult:
        out = result(messages, tools)
        CALLS.append(Call(SOURCE[0], [m.model_copy(deep=True) for m in messages], list(tools or []),
                          comparable(out.generations[0].message)))
        return out

    return recorded


CALLS: list[Call] = []
SOURCE = [""]


def comparable(message: BaseMessage) -> dict[str, Any]:
    """A message's fields that must not change, without the id LangChain makes up per run."""
    return message.model_dump(exclude={"id"})


def corpus() -> Iterator[tuple[str, str, list[str]]]:
    """(label, graph, user lines) of every conversation played."""
    from benchmarks.conversation import CHAT_LINES, HANDOFF_LINES
    from benchmarks.load import marked, script
    from handoff.graphs.registry import GRAPHS

    datasets = {path.stem: [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
                for path in sorted(DATASETS.glob("*.jsonl"))}
    lines = [text.format(turn=k) for k, text in enumerate(
        [*HANDOFF_LINES.values(), *(t for texts in CHAT_LINES.values() for t in texts)])]
    for graph, entry in GRAPHS.items():
        yield f"{graph}/demo", graph, list(entry.demo)
        yield f"{graph}/load-script", graph, marked(script(graph, 10), "r000000", 0)
        yield f"{graph}/conversation-lines", graph, lines
        for name, rows in datasets.items():
            for row in rows:
                yield f"{graph}/{name}/{row['id']}", graph, [turn["user"] for turn in row["turns"]]


def record(out: Path, *, on_async: bool) -> None:
    """Play the corpus and store every call (see the module's docstring); ``on_async`` plays each turn
    with ``asend`` (the service's path) instead of ``send``."""
    from handoff.agents import offline
    from handoff.graphs.persistence import serializer
    from handoff.graphs.registry import GRAPHS
    from handoff.graphs.session import HandoffSession

    offline._result = _recording(offline._result)  # type: ignore[assignment]
    model = OfflineChatModel()
    compiled = {name: entry.build(model=model) for name, entry in GRAPHS.items()}

    async def play(session: HandoffSession, texts: list[str], label: str) -> None:
        for k, text in enumerate(texts):
            SOURCE[0] = f"{label}#{k}"
            try:
                await session.asend(text) if on_async else session.send(text)
            except Exception as exc:  # a turn the graph refuses is part of the record too
                CALLS.append(Call(SOURCE[0], [], [], {"raised": type(exc).__name__}))
                return

    for label, graph, texts in corpus():
        session = HandoffSession(compiled[graph].compile(checkpointer=InMemorySaver(serde=serializer()),
                                                         store=InMemoryStore()))
        asyncio.run(play(session, texts, label))
    # Plain tuples, so the file loads whatever module ran the recording (``-m`` makes it __main__).
    out.write_bytes(pickle.dumps([(c.source, c.messages, c.tools, c.answer) for c in CALLS]))
    print(f"{len(CALLS)} calls from {len({c.source.split('#')[0] for c in CALLS})} conversations -> {out}")


def load(path: Path) -> list[Call]:
    rows = pickle.loads(path.read_bytes())  # a file this harness wrote
    return [Call(*row) for row in rows]


def _prompt(call: Call) -> list[dict[str, Any]]:
    return [comparable(m) for m in call.messages]


def compare(old: Path, new: Path) -> int:
    """How many calls differ between two recordings (prompt or answer); prints the first few."""
    a, b = load(old), load(new)
    bad = 0
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if (x.source, _prompt(x), x.tools, x.answer) != (y.source, _prompt(y), y.tools, y.answer):
            bad += 1
            if bad <= 5:
                print(f"call {i} ({x.source} / {y.source}) differs:\n  {x.answer}\n  {y.answer}")
    if len(a) != len(b):
        bad += 1
        print(f"{len(a)} calls vs {len(b)}")
    print(f"{len(a)} calls compared, {bad} differences")
    return bad


def replay(path: Path) -> int:
    """How many recorded answers ``decide`` no longer gives (usage left out: ``_generate`` adds it)."""
    bad = 0
    calls = [c for c in load(path) if c.messages]
    for call in calls:
        got = comparable(decide(call.messages, [t["function"] for t in call.tools]))
        want = {**call.answer, "usage_metadata": None}
        if got != want:
            bad += 1
            if bad <= 5:
                print(f"{call.source} differs:\n  {want}\n  {got}")
    print(f"{len(calls)} calls replayed, {bad} differences")
    return bad


def _run_all(model: OfflineChatModel, calls: Sequence[Call], *, fresh_conversations: bool = False) -> None:
    conversation = None
    for call in calls:
        if fresh_conversations and call.source.split("#")[0] != conversation:
            conversation = call.source.split("#")[0]
            _clear_caches()
        model._generate(call.messages, tools=call.tools)


def _clear_caches() -> None:
    """Forget what the offline model's caches learnt (a version without them has nothing to forget)."""
    try:
        import handoff.agents.offline_cache as cache
    except ImportError:
        return
    cache.clear_all()


def timing(path: Path, rounds: int) -> None:
    """CPU per call over the recorded prompts, in rounds alternating two ways: with every cache of the
    offline model emptied at each conversation's first call (a pessimistic worker: the load
    benchmark's lines are unique to their conversation, but a worker keeps the tools' descriptions),
    and warm (caches kept across the whole corpus)."""
    calls = [c for c in load(path) if c.messages]
    model = OfflineChatModel()
    _run_all(model, calls)  # loads the embedder and fills its vector cache, as a running worker has
    fresh: list[float] = []
    warm: list[float] = []
    for _ in range(rounds):
        for sink, clear in ((fresh, True), (warm, False)):
            start = time.process_time()
            _run_all(model, calls, fresh_conversations=clear)
            sink.append((time.process_time() - start) / len(calls) * 1000)
    for name, values in (("caches emptied per conversation", fresh), ("warm", warm)):
        print(f"{name}: {statistics.median(values):.3f} ms/call median over {rounds} rounds "
              f"(min {min(values):.3f}, max {max(values):.3f}), {len(calls)} calls a round")


def profile(path: Path, top: int) -> None:
    calls = [c for c in load(path) if c.messages]
    model = OfflineChatModel()
    _run_all(model, calls)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(3):
        _run_all(model, calls)
    profiler.disable()
    stats = pstats.Stats(profiler)
    print(f"{len(calls) * 3} calls")
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("file", type=Path)
    rec.add_argument("--async", dest="on_async", action="store_true", help="play turns with asend")
    cmp = sub.add_parser("compare")
    cmp.add_argument("old", type=Path)
    cmp.add_argument("new", type=Path)
    sub.add_parser("replay").add_argument("file", type=Path)
    tim = sub.add_parser("time")
    tim.add_argument("file", type=Path)
    tim.add_argument("--rounds", type=int, default=7)
    prof = sub.add_parser("profile")
    prof.add_argument("file", type=Path)
    prof.add_argument("--top", type=int, default=35)
    args = parser.parse_args(argv)
    if args.command == "record":
        record(args.file, on_async=args.on_async)
    elif args.command == "compare":
        return 1 if compare(args.old, args.new) else 0
    elif args.command == "replay":
        return 1 if replay(args.file) else 0
    elif args.command == "time":
        timing(args.file, args.rounds)
    else:
        profile(args.file, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
