"""A local OpenAI-compatible server for the semantic triggers' real-model path, on 127.0.0.1.

``POST /v1/embeddings`` answers each input with the offline model's vector (so routing through
``OpenAIEmbeddings`` means something), as floats or as base64 as the client asks; ``POST
/v1/chat/completions`` answers a fixed text (a model that never hands over). Every request body is
recorded; ``fail`` makes the embeddings route answer 500.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from handoff.agents.embeddings import OfflineEmbeddings
from tests.support.local_http import JsonHandler, serving


class EmbeddingsStub:
    """Embeddings from the offline model, served the way OpenAI serves them."""

    def __init__(self, *, reply: str = "Stub model here.") -> None:
        self.reply = reply
        self.fail = False
        self.embedding_requests: list[dict[str, Any]] = []
        self.chat_requests: list[dict[str, Any]] = []
        self._offline = OfflineEmbeddings()
        self._server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        vectors = [self._offline.vector(str(t)) for t in texts]
        as_base64 = body.get("encoding_format") == "base64"
        data = [{"object": "embedding", "index": i,
                 "embedding": base64.b64encode(np.asarray(v, dtype="<f4").tobytes()).decode() if as_base64
                 else [float(x) for x in v]}
                for i, v in enumerate(vectors)]
        return {"object": "list", "data": data, "model": body.get("model", "stub"),
                "usage": {"prompt_tokens": len(texts), "total_tokens": len(texts)}}

    def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        return {"id": f"chatcmpl-{len(self.chat_requests)}", "object": "chat.completion",
                "created": int(time.time()), "model": body.get("model", "stub"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": self.reply},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(JsonHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                path = self.path.rstrip("/")
                if path.endswith("/embeddings"):
                    stub.embedding_requests.append(body)
                    if stub.fail:
                        self.send_json(500, {"error": {"message": "scripted failure", "type": "server_error"}})
                        return
                    self.send_json(200, stub.embeddings(body))
                elif path.endswith("/chat/completions"):
                    stub.chat_requests.append(body)
                    self.send_json(200, stub.chat(body))
                else:
                    self.send_json(404, {"error": {"message": f"no route {self.path}"}})

        return Handler

    @contextmanager
    def running(self) -> Iterator[EmbeddingsStub]:
        with serving(self._handler()) as self._server:
            yield self
