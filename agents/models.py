"""The one model factory: a real OpenAI-compatible model, or the offline model."""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel
from pydantic import ValidationError

from handoff.agents.offline import OfflineChatModel
from handoff.agents.settings import ModelSettings


class ModelConfigError(ValueError):
    """The model settings in the environment are unusable; the message says which."""


def load_settings() -> ModelSettings:
    """Read settings, turning validation errors into one readable message."""
    try:
        return ModelSettings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ModelConfigError(f"bad model configuration: {problems}") from None


def make_chat_model(settings: ModelSettings | None = None) -> BaseChatModel:
    """The chat model the agents use, from settings (the environment by default).

    Real models get LangChain's own retries and timeout; a configured fallback
    model is attached per agent once tools are bound (see ``bind_agent_model``
    in graphs/agent_node.py), because fallbacks must wrap the tool-bound model.
    """
    settings = settings or load_settings()
    if not settings.uses_real_model:
        return OfflineChatModel()
    return _openai(settings, settings.model)


def make_fallback_model(settings: ModelSettings | None = None) -> BaseChatModel | None:
    """The configured fallback model, or None."""
    settings = settings or load_settings()
    if not settings.uses_real_model or not settings.fallback_model:
        return None
    return _openai(settings, settings.fallback_model)


def _openai(settings: ModelSettings, model: str) -> BaseChatModel:
    from langchain_openai import ChatOpenAI

    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "not-needed"
    return ChatOpenAI(
        model=model,
        api_key=key,
        base_url=str(settings.openai_base_url) if settings.openai_base_url else None,
        timeout=settings.timeout_s,
        max_retries=settings.max_retries,
        temperature=0,
    )
