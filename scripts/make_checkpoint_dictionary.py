"""Make the dictionary that primes the compressor of checkpoint blobs (graphs/persistence.py).

A checkpoint of a bounded state is a few kilobytes of msgpack, mostly the same
keys, class paths and agent names every time; a compressor starts each blob
knowing none of them. A raw-content dictionary gives it those strings up front.
It is made from the labelled conversations in ``datasets/`` (played on the
offline model, the first six of each graph, the latest checkpoint of each),
interleaved across the four graphs, keeping the last ``--size`` bytes: zstd
reads up to 64 KiB of it well (``checkpoint-d2.zdict``, codec ``zstdd2``); zlib,
which wrote ``checkpoint-d1.zdict`` this same way from an earlier state shape,
reads only the last 32 KiB. zstd's own trainer (``zstandard.train_dictionary``,
fed every checkpoint of every labelled conversation) compressed the benchmark's
checkpoints no better than these raw bytes at levels 1-6, so the simpler way stays.

The dictionary is frozen: every blob written with it needs the very same bytes
to load. The codec that uses it is named after its file (``zstdd2`` for
``checkpoint-d2.zdict``) and its SHA-256 is pinned by a test. To make a better
one, write ``checkpoint-d3.zdict`` with ``--out`` and add a ``zstdd3`` codec
beside the old ones, never replace them.

    python scripts/make_checkpoint_dictionary.py --out graphs/checkpoint-d3.zdict
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from handoff.agents.offline import OfflineChatModel
from handoff.graphs.persistence import STATE_TYPES, open_persistence
from handoff.graphs.registry import GRAPHS
from handoff.graphs.session import HandoffSession

ROOT = Path(__file__).resolve().parents[1]
SIZE = 64 * 1024
"""Bytes kept by default: zstd at the codec's level reads a 64 KiB raw dictionary whole."""
PER_GRAPH = 6


def samples(graph: str) -> list[bytes]:
    """The raw msgpack of the latest checkpoint of each of the graph's first labelled conversations."""
    serde = JsonPlusSerializer(allowed_msgpack_modules=STATE_TYPES)
    lines = (ROOT / "datasets" / f"{graph}.jsonl").read_text(encoding="utf-8").splitlines()
    conversations = [json.loads(line) for line in lines if line.strip()][:PER_GRAPH]
    out: list[bytes] = []
    with open_persistence("memory", serde=serde) as persistence:  # plain: the dictionary may not exist yet
        compiled = GRAPHS[graph].build(model=OfflineChatModel()).compile(
            checkpointer=persistence.checkpointer, store=persistence.store)
        for conversation in conversations:
            session = HandoffSession(compiled, f"dictionary-{conversation['id']}")
            for turn in conversation["turns"]:
                session.send(turn["user"])
                if compiled.get_state(session.state_config).next:  # waits for a person
                    break
            latest = compiled.checkpointer.get_tuple(session.state_config)
            out.append(serde.dumps_typed(latest.checkpoint)[1])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="where to write the dictionary")
    parser.add_argument("--size", type=int, default=SIZE, help="bytes to keep, from the end")
    args = parser.parse_args()
    by_graph = {graph: samples(graph) for graph in sorted(GRAPHS)}
    interleaved = [blobs[i] for i in range(PER_GRAPH) for blobs in by_graph.values() if i < len(blobs)]
    args.out.write_bytes(b"".join(interleaved)[-args.size:])
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes from {len(interleaved)} checkpoints)")


if __name__ == "__main__":
    main()
