"""The case file: what is known so far, typed per domain, merged field by field."""

from __future__ import annotations

from typing import Any, ClassVar, get_args

from pydantic import BaseModel, ConfigDict


class CaseFile(BaseModel):
    """Base of every domain's case file.

    Subclasses declare typed, optional fields. The conversation state keeps the
    case file as a plain dict so any checkpointer can store it; the domain model
    validates every update at the boundary (tools, init actions, triggers).

    ``bound_facts`` names the facts that hold only for a subject: e.g.
    ``{"identity_verified": "account_id"}``. An update that puts another
    subject on file (another account id) resets the fact to False unless the
    same update sets it, so a fact is never carried over to a subject it was
    not established for. Bound facts are booleans: False is what the merge can
    write (it skips None).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    bound_facts: ClassVar[dict[str, str | tuple[str, ...]]] = {}
    """Fact field -> the field(s) naming what it was established for."""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        for fact, subjects in cls.bound_facts.items():
            field = cls.model_fields.get(fact)
            if field is None or not (field.annotation is bool or bool in get_args(field.annotation)):
                raise TypeError(f"{cls.__name__}.bound_facts: {fact!r} must be a bool field")
            missing = [s for s in _subjects(subjects) if s not in cls.model_fields]
            if missing:
                raise TypeError(f"{cls.__name__}.bound_facts: {fact!r} is bound to unknown field(s) {missing}")

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

    Returns the updates restricted to the model's fields, plus the reset of
    every bound fact whose subject they change (see ``CaseFile.bound_facts``);
    raises CaseFileError naming every bad field. Nothing is applied here: the state's reducer does
    that, and only once the whole update is known to be valid.
    """
    known = {k: v for k, v in updates.items() if k in model.model_fields}
    known = {**known, **stale_facts(model, current, known)}
    try:
        model.model_validate(merge_case_file(current, known))
    except ValueError as exc:
        errors = getattr(exc, "errors", list)()
        named = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
        raise CaseFileError(f"case file update refused: {named or exc}") from None
    return known


def _subjects(subjects: str | tuple[str, ...]) -> tuple[str, ...]:
    return (subjects,) if isinstance(subjects, str) else tuple(subjects)


def stale_facts(model: type[CaseFile], current: dict[str, Any], updates: dict[str, Any]) -> dict[str, bool]:
    """The bound facts ``updates`` make stale, each reset to False.

    A fact goes stale when it holds now, the update changes one of its
    subjects, and the update does not set the fact itself.
    """
    resets: dict[str, bool] = {}
    for fact, subjects in model.bound_facts.items():
        if updates.get(fact) is not None or current.get(fact) in (None, False):
            continue
        merged = merge_case_file(current, {s: updates[s] for s in _subjects(subjects) if s in updates})
        if any(merged.get(s) != current.get(s) for s in _subjects(subjects)):
            resets[fact] = False
    return resets
