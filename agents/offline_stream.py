"""The offline model's answer as a stream: its text a few words at a time, then its tool calls whole.

A real model's answer arrives in pieces; the offline one is computed at once, and then handed out the
same way, so every surface (``handoff chat``, the service's token events, the web chat, Studio) shows
the same behaviour offline as with a real model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGenerationChunk

WORDS_PER_CHUNK = 4
"""Words per text chunk: small enough to look like a model writing, few enough chunks per answer that
streaming costs little (each chunk passes through LangGraph's callbacks and the service's events)."""
_WORDS = re.compile(r"\s*\S+\s*|\s+")


def text_pieces(text: str, words: int = WORDS_PER_CHUNK) -> list[str]:
    """``text`` cut before every ``words``-th word; the pieces join back to exactly ``text``."""
    spans = _WORDS.findall(text)
    return ["".join(spans[i:i + words]) for i in range(0, len(spans), words)]


def stream_chunks(message: AIMessage) -> Iterator[ChatGenerationChunk]:
    """``message`` as chunks whose sum is ``message``: the text in pieces, the tool calls in one chunk
    after it (a client never sees half a call), the usage on the last chunk."""
    content = message.content if isinstance(message.content, str) else ""
    pieces: list[AIMessageChunk] = [AIMessageChunk(content=piece) for piece in text_pieces(content)]
    if message.tool_calls:
        pieces.append(AIMessageChunk(content="", tool_call_chunks=[
            tool_call_chunk(name=call["name"], args=json.dumps(call["args"]), id=call["id"], index=i)
            for i, call in enumerate(message.tool_calls)
        ]))
    if not pieces:
        pieces.append(AIMessageChunk(content=""))
    last = pieces[-1]
    pieces[-1] = last.model_copy(update={"usage_metadata": message.usage_metadata})
    for piece in pieces:
        yield ChatGenerationChunk(message=piece)
