"""The checkpoint codec in place: zlib with ``d1`` (before issue 18) against zstd with ``d2`` at a few levels.

Run with ``python -m benchmarks.codec [--turns 300]``. One project graph per candidate codec
plays the storage benchmark's conversation (``graph.invoke`` on SQLite), all open at once and
alternating turn by turn; each codec counts the CPU time its own thread spends compressing and
decompressing. Measured in place, not on a loop over saved blobs: a checkpoint is compressed
on a LangGraph worker thread between other work, with the compressor's tables cold, which
costs zstd two to four times what the same blobs cost back to back. The dictionaries were made
from the labelled conversations in ``datasets/``, never from this conversation.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import zlib
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import zstandard
from langgraph.checkpoint.serde.encrypted import EncryptedSerializer
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from benchmarks.conversation import script
from benchmarks.peers import project
from handoff.graphs.persistence import (
    COMPRESS_FROM,
    DICTIONARY,
    STATE_TYPES,
    ZLIB_DICTIONARY,
    ZSTD_LEVEL,
    CheckpointCodec,
    Lender,
)

Pack = Callable[[bytes], bytes]


def zlib_d1() -> Pack:
    zdict = ZLIB_DICTIONARY.read_bytes()

    def pack(data: bytes) -> bytes:
        deflate = zlib.compressobj(6, zdict=zdict)
        return deflate.compress(data) + deflate.flush()

    return pack


def zstd_d2(level: int) -> Pack:
    data = zstandard.ZstdCompressionDict(DICTIONARY.read_bytes(), dict_type=zstandard.DICT_TYPE_RAWCONTENT)
    data.precompute_compress(level=level)
    lender = Lender(lambda: zstandard.ZstdCompressor(level=level, dict_data=data, write_checksum=False,
                                                      write_dict_id=False))

    def pack(plain: bytes) -> bytes:
        compressor = lender.take()
        try:
            return compressor.compress(plain)
        finally:
            lender.give_back(compressor)

    return pack


@dataclass
class Metered(CheckpointCodec):
    """The project's codec, writing with ``pack`` under ``name``, counting its thread CPU time."""

    name: str = "zstdd2"
    pack: Pack = field(default_factory=lambda: zstd_d2(ZSTD_LEVEL))
    packs: list[float] = field(default_factory=list)
    unpacks: list[float] = field(default_factory=list)
    stored: int = 0

    def __post_init__(self) -> None:
        super().__init__()

    def encrypt(self, plaintext: bytes) -> tuple[str, bytes]:
        if len(plaintext) < COMPRESS_FROM:
            self.stored += len(plaintext)
            return "raw", plaintext
        started = time.thread_time()
        packed = self.pack(plaintext)
        self.packs.append(time.thread_time() - started)
        self.stored += len(packed)
        return self.name, packed

    def decrypt(self, ciphername: str, ciphertext: bytes) -> bytes:
        started = time.thread_time()
        plain = super().decrypt(ciphername, ciphertext)
        if ciphername != "raw":
            self.unpacks.append(time.thread_time() - started)
        return plain


def candidates() -> dict[str, Metered]:
    out = {"zlib 6, d1 (before)": Metered(name="zlibd1", pack=zlib_d1())}
    for level in (1, 3, 5):
        out[f"zstd {level}, d2" + (" (now)" if level == ZSTD_LEVEL else "")] = Metered(pack=zstd_d2(level))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=300)
    args = parser.parse_args(argv)
    codecs = candidates()
    cpu: dict[str, list[float]] = {name: [] for name in codecs}
    with tempfile.TemporaryDirectory(prefix="handoff-codec-") as tmp, ExitStack() as stack:
        sides = {name: stack.enter_context(project(Path(tmp) / f"{i}.sqlite", serde=EncryptedSerializer(
            codec, JsonPlusSerializer(allowed_msgpack_modules=STATE_TYPES)))) for i, (name, codec) in
            enumerate(codecs.items())}
        names = list(sides)
        for index, turn in enumerate(script(args.turns, 5)):
            for name in names[index % len(names):] + names[:index % len(names)]:
                started = time.process_time()
                sides[name].send(turn.text)
                cpu[name].append(time.process_time() - started)
                sides[name].drain()
    print(f"{args.turns} turns, codecs alternating turn by turn; CPU time of the thread that ran the codec")
    print("| codec | checkpoint blobs MB | µs CPU / compress | µs CPU / decompress | codec CPU ms/turn "
          "| whole turn CPU ms (median) |")
    print("|---|---|---|---|---|---|")
    for name, codec in codecs.items():
        pack_us = statistics.mean(codec.packs) * 1e6
        unpack_us = statistics.mean(codec.unpacks or [0.0]) * 1e6
        turn_ms = (sum(codec.packs) + sum(codec.unpacks)) / args.turns * 1000
        print(f"| {name} | {codec.stored / 1e6:.3f} | {pack_us:.0f} | {unpack_us:.0f} | {turn_ms:.2f} "
              f"| {statistics.median(cpu[name]) * 1000:.1f} |")


if __name__ == "__main__":
    main()
