"""What the semantic trigger adds to a turn: the intake's trigger check with and without it.

Run with ``python -m benchmarks.semantic_trigger`` (``make bench-router``). The customer-service
agents are built once with their semantic triggers (offline WordLlama embeddings, route vectors
computed on the first check) and once without. Each round checks every message of a fixed set of
customer lines with both, alternating which goes first, so the machine's drift hits both alike:

- ``rules only``: the declared keyword rules (the graph built with ``HANDOFF_SEMANTIC_TRIGGERS=0``);
- ``+ semantic, warm``: the same message again, its vector in the embedding cache (the issue's goal:
  under 1 ms);
- ``+ semantic, new message``: the message's vector computed (the cache emptied first, the route
  vectors kept): what a turn with a message never seen costs.

The table gives the median and the spread (the 10th to the 90th percentile) of one check, in
microseconds, and what the semantic trigger adds over the rules alone. Timings compare only on the
same machine, in the same run.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable, Sequence

from handoff.agents.customer_service.specialists import GENERAL, TECHNICAL, customer_service_agents
from handoff.agents.embeddings import OfflineEmbeddings
from handoff.agents.spec import AgentSpec
from handoff.agents.triggers import TriggerContext, first_firing, semantic_routing

MESSAGES = (
    "Hi, it's Dana again, account ACC-1001",
    "my broadband keeps cutting out every evening around eight",
    "the router shows a blinking orange light since this morning",
    "you charged my card twice for the same month",
    "why is this month's bill so much higher than usual?",
    "I restarted everything twice and it is still dropping",
    "can I move my contract to my new flat next month?",
    "thanks, that's all for today",
)
"""Customer lines of every kind: faults, money, general questions, small talk."""


def checker(agents: Sequence[AgentSpec], source: str) -> Callable[[str], object]:
    """One intake check of ``source``'s triggers on a message, as graphs/intake.py runs it."""
    triggers = next(a for a in agents if a.name == source).triggers
    return lambda message: first_firing(triggers, TriggerContext(source=source, message=message, case_file={}))


def timed(check: Callable[[str], object], before: Callable[[], None] | None = None) -> list[float]:
    """Microseconds of one check per message."""
    times = []
    for message in MESSAGES:
        if before is not None:
            before()
        started = time.perf_counter_ns()
        check(message)
        times.append((time.perf_counter_ns() - started) / 1000)
    return times


def spread(samples: list[float]) -> tuple[float, float, float]:
    """Median, 10th and 90th percentile."""
    deciles = statistics.quantiles(samples, n=10)
    return statistics.median(samples), deciles[0], deciles[-1]


def measure(rounds: int, source: str) -> dict[str, list[float]]:
    embeddings = OfflineEmbeddings()
    with semantic_routing(enabled=True, embeddings=embeddings):
        semantic = checker(customer_service_agents(), source)
    with semantic_routing(enabled=False):
        rules = checker(customer_service_agents(), source)
    for message in MESSAGES:  # route vectors computed, every message's vector cached
        semantic(message)
    samples: dict[str, list[float]] = {"rules only": [], "+ semantic, warm": [], "+ semantic, new message": []}
    for round_ in range(rounds):
        runs = [("rules only", rules, None), ("+ semantic, warm", semantic, None),
                ("+ semantic, new message", semantic, embeddings._cache.clear)]
        for name, check, before in runs if round_ % 2 == 0 else reversed(runs):
            samples[name].extend(timed(check, before))
        for message in MESSAGES:  # warm again after the new-message runs emptied the cache
            semantic(message)
    return samples


def table(samples: dict[str, list[float]]) -> str:
    base = statistics.median(samples["rules only"])
    lines = [f"{'check':<26}{'median µs':>11}{'p10-p90 µs':>16}{'adds µs':>10}"]
    for name, values in samples.items():
        median, low, high = spread(values)
        added = "" if name == "rules only" else f"{median - base:.1f}"
        lines.append(f"{name:<26}{median:>11.1f}{f'{low:.1f}-{high:.1f}':>16}{added:>10}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200, help="alternating rounds over the messages")
    parser.add_argument("--source", default=GENERAL, choices=(GENERAL, TECHNICAL),
                        help="whose triggers to check (General Support has two semantic routes)")
    args = parser.parse_args(argv)
    samples = measure(args.rounds, args.source)
    print(f"{args.source}'s intake triggers, {len(MESSAGES)} messages x {args.rounds} rounds, "
          "offline embeddings (WordLlama l2_supercat, 256-d)\n")
    print(table(samples))
    print(f"\nmeasured on {platform.platform()}, Python {platform.python_version()}")


if __name__ == "__main__":
    main()
