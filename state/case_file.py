"""The case file: what is known so far, typed per domain, merged field by field."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class CaseFile(BaseModel):
    """Base of every domain's case file.

    Subclasses declare typed, optional fields. The conversation state keeps the
    case file as a plain dict so any checkpointer can store it; the domain model
    validates every update at the boundary (tools, init actions, triggers).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def facts(self) -> dict[str, Any]:
        """The fields that hold a value, for briefings and tests."""
        return {k: v for k, v in self.model_dump(mode="json").items() if v not in (None, [], "")}


def merge_case_file(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any]:
    """Reducer: later values win per field; list fields are unioned in order.

    A field is never dropped by an update that does not mention it, which is
    what keeps facts alive across handoffs.
    """
    merged = dict(left or {})
    for key, value in (right or {}).items():
        if value is None:
            continue
        old = merged.get(key)
        if isinstance(old, list) and isinstance(value, list):
            merged[key] = old + [v for v in value if v not in old]
        else:
            merged[key] = value
    return merged


class CaseFileError(ValueError):
    """An update the domain's case file refuses; the message names the fields."""


def checked_update(
    model: type[CaseFile], current: dict[str, Any], updates: dict[str, Any]
) -> dict[str, Any]:
    """Validate ``updates`` against ``model`` as applied to ``current``.

    Returns the updates restricted to the model's fields; raises CaseFileError
    naming every bad field. Nothing is applied here: the state's reducer does
    that, and only once the whole update is known to be valid.
    """
    known = {k: v for k, v in updates.items() if k in model.model_fields}
    try:
        model.model_validate(merge_case_file(current, known))
    except ValueError as exc:
        errors = getattr(exc, "errors", list)()
        named = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
        raise CaseFileError(f"case file update refused: {named or exc}") from None
    return known
