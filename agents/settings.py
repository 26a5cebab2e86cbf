"""Model settings from the environment (pydantic-settings)."""

from __future__ import annotations

from pydantic import Field, HttpUrl, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ModelSettings(BaseSettings):
    """Which chat model the agents use.

    A real OpenAI-compatible model is used when ``OPENAI_API_KEY`` or
    ``OPENAI_BASE_URL`` is set (a local server often needs no key); otherwise,
    or when ``HANDOFF_OFFLINE=1``, the labelled offline model.
    """

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", populate_by_name=True)

    openai_api_key: SecretStr | None = Field(default=None, alias="OPENAI_API_KEY")
    openai_base_url: HttpUrl | None = Field(default=None, alias="OPENAI_BASE_URL")
    model: str = Field(default="gpt-4o-mini", alias="HANDOFF_MODEL", min_length=1)
    fallback_model: str | None = Field(default=None, alias="HANDOFF_FALLBACK_MODEL")
    timeout_s: float = Field(default=60.0, gt=0, alias="HANDOFF_MODEL_TIMEOUT")
    """Seconds one model call may take in all (a deadline over the whole response, streamed or not,
    not per chunk received); a missed deadline is retried like a timeout (graphs/retry.py)."""
    max_retries: int = Field(default=0, ge=0, le=10, alias="HANDOFF_MODEL_RETRIES")
    """Client-side retries; 0 by default because LangGraph's RetryPolicy on each agent
    node retries transient errors with backoff (graphs/retry.py)."""
    offline: bool = Field(default=False, alias="HANDOFF_OFFLINE")

    @property
    def uses_real_model(self) -> bool:
        if self.offline:
            return False
        key = self.openai_api_key.get_secret_value() if self.openai_api_key else ""
        return bool(key) or self.openai_base_url is not None
