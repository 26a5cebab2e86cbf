"""Text embeddings for the semantic trigger: a real model's, or a small static one that ships offline.

``make_embeddings()`` gives any ``langchain_core.embeddings.Embeddings``:

- with a real model configured (``OPENAI_API_KEY`` or ``OPENAI_BASE_URL``, the same settings as the
  chat model), ``OpenAIEmbeddings`` on that server, model ``HANDOFF_EMBEDDING_MODEL``
  (``text-embedding-3-small`` by default);
- otherwise ``OfflineEmbeddings``: WordLlama's 256-dimension ``l2_supercat`` static embeddings,
  read from the files inside the installed ``wordllama`` wheel. Nothing is downloaded, ever.
"""

from __future__ import annotations

import importlib.util
import threading
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from langchain_core.embeddings import Embeddings
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from handoff.agents.settings import ModelSettings

if TYPE_CHECKING:
    from tokenizers import Tokenizer

MAX_EMBED_CHARS = 2_000
"""Longest text embedded; the rest is cut. Routing needs the gist of a message, and a bound keeps the
cost of one turn's trigger fixed (the graph's boundary admits messages of up to 20,000 characters)."""

WORDLLAMA_WEIGHTS = "weights/l2_supercat_256.safetensors"
# The wheel ships the tokenizer under tokenizers/, while wordllama 0.4.0.post1's own loader looks
# under tokenizer/ and then falls back to a hub download: so both files are read here, directly.
WORDLLAMA_TOKENIZER = "tokenizers/l2_supercat_tokenizer_config.json"
WORDLLAMA_TENSOR = "embedding.weight"


class EmbeddingsUnavailable(RuntimeError):
    """The offline embedding model's files are not installed; the message says what to install."""


class SemanticSettings(BaseSettings):
    """The semantic triggers' settings: on or off, and the embedding model a real server is asked for."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", populate_by_name=True)

    embedding_model: str = Field(default="text-embedding-3-small", alias="HANDOFF_EMBEDDING_MODEL",
                                 min_length=1)
    semantic_triggers: bool = Field(default=True, alias="HANDOFF_SEMANTIC_TRIGGERS")
    """``HANDOFF_SEMANTIC_TRIGGERS=0`` builds graphs without their semantic triggers."""


def bounded(text: str) -> str:
    """``text`` cut to ``MAX_EMBED_CHARS``."""
    return text[:MAX_EMBED_CHARS]


def wordllama_files() -> tuple[Path, Path]:
    """The weights and the tokenizer inside the installed wordllama package.

    Found without importing the package: importing it configures the root logger and pulls in the
    hub client, neither of which an embedder needs.
    """
    spec = importlib.util.find_spec("wordllama")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingsUnavailable(
            "the offline embedding model needs the 'wordllama' package: pip install 'wordllama==0.4.0.post1'")
    root = Path(next(iter(spec.submodule_search_locations)))
    weights, tokenizer = root / WORDLLAMA_WEIGHTS, root / WORDLLAMA_TOKENIZER
    missing = [str(p) for p in (weights, tokenizer) if not p.is_file()]
    if missing:
        raise EmbeddingsUnavailable(f"the installed wordllama package lacks {', '.join(missing)}")
    return weights, tokenizer


@lru_cache(maxsize=1)
def _wordllama() -> tuple[np.ndarray, Tokenizer]:
    """The token table (float32, rows unit-free) and the tokenizer, loaded once per process."""
    from safetensors import safe_open
    from tokenizers import Tokenizer

    weights, tokenizer_file = wordllama_files()
    with safe_open(str(weights), framework="np", device="cpu") as f:
        table = np.ascontiguousarray(f.get_tensor(WORDLLAMA_TENSOR).astype(np.float32))
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return table, tokenizer


class OfflineEmbeddings(Embeddings):
    """WordLlama ``l2_supercat`` (256 dimensions): a static embedding model, no LLM and no network.

    A text's vector is the mean of its tokens' vectors, as WordLlama computes it, scaled to unit
    length so a dot product is the cosine. Recently seen texts are kept in a small LRU cache.
    """

    label: ClassVar[str] = "offline static embeddings (WordLlama l2_supercat, 256-d)"
    dimensions: ClassVar[int] = 256

    def __init__(self, *, cache_size: int = 1024) -> None:
        self.table, self.tokenizer = _wordllama()
        self.cache_size = cache_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def vector(self, text: str) -> np.ndarray:
        """``text``'s unit vector (zero for a text with no tokens), cached."""
        text = bounded(text)
        with self._lock:
            cached = self._cache.get(text)
            if cached is not None:
                self._cache.move_to_end(text)
                return cached
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        if ids:
            pooled = self.table[np.clip(ids, 0, len(self.table) - 1)].mean(axis=0)
            norm = float(np.linalg.norm(pooled))
            vector = pooled / norm if norm else pooled
        else:
            vector = np.zeros(self.table.shape[1], dtype=np.float32)
        vector.setflags(write=False)
        with self._lock:
            self._cache[text] = vector
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return vector

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.vector(t).tolist() for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.vector(text).tolist()


@lru_cache(maxsize=1)
def offline_embeddings() -> OfflineEmbeddings:
    """The process's one offline embedder. Every semantic router and every judge by meaning shares it,
    and so its cache: a turn's message embedded by one is not embedded again by the next."""
    return OfflineEmbeddings()


def make_embeddings(settings: ModelSettings | None = None) -> Embeddings:
    """The embeddings the semantic triggers use: the real server's when a real model is configured,
    else the offline static model (``offline_embeddings()``, shared by the process).

    Args:
        settings: The model settings; the environment's by default (``agents.models.load_settings``).
    """
    if settings is None:
        from handoff.agents.models import load_settings

        settings = load_settings()
    if not settings.uses_real_model:
        return offline_embeddings()
    from langchain_openai import OpenAIEmbeddings

    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "not-needed"
    return OpenAIEmbeddings(
        model=SemanticSettings().embedding_model,
        api_key=key,
        base_url=str(settings.openai_base_url) if settings.openai_base_url else None,
        timeout=settings.timeout_s,
        max_retries=max(settings.max_retries, 1),
        # A local OpenAI-compatible server takes text; tiktoken's token ids would need its vocabulary
        # (a download) and mean nothing to a non-OpenAI model.
        check_embedding_ctx_length=False,
    )


def label_of(embeddings: Embeddings) -> str:
    """A readable name of an embedder, for reports."""
    return str(getattr(embeddings, "label", None) or getattr(embeddings, "model", None) or type(embeddings).__name__)
