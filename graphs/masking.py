"""Masking sensitive text before it leaves the process (traces and logs).

``Masker`` replaces account ids and numbers, IBANs, card numbers (Luhn-checked),
card codes and e-mail addresses by pattern anywhere, whole values under
sensitive keys (``account_id``, ``email``, ...) in data and in text that
spells data out (``"postcode": "90210"``, ``postcode=90210``), literal values
the domain's records hold (its customers' names and postcodes), and API keys
and tokens with langsmith's own ``DEFAULT_SECRET_RULES``. Called on JSON-like
data it is a langsmith anonymizer (``create_anonymizer``).

``Sensitivity`` is what a domain declares sensitive: the case-file fields,
the other keys (a tool's arguments), the patterns and the known values. It
is set on the graph builder (``graph.sensitivity``) and masks that graph's
traces; every declaration seen also masks the process's logs
(graphs/log_safety.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from langsmith.anonymizer import DEFAULT_SECRET_RULES, create_anonymizer
from pydantic import BaseModel, ConfigDict, Field

MASKED = "[masked]"


class MaskRule(BaseModel):
    """One kind of sensitive text: a pattern and what replaces it."""

    model_config = ConfigDict(frozen=True)

    name: str
    pattern: str
    replacement: str = Field(description="May refer to the pattern's groups, e.g. r'\\1 [code]'.")
    luhn: bool = Field(default=False, description="Mask only digit runs that pass the Luhn check.")


class KnownValue(BaseModel):
    """A literal sensitive value the domain's own records hold (a customer's name, a postcode)."""

    model_config = ConfigDict(frozen=True)

    text: str = Field(min_length=2)
    label: str = Field(default=MASKED, description="What replaces it, e.g. '[name]'.")


DEFAULT_MASK_RULES: tuple[MaskRule, ...] = (
    MaskRule(name="email", pattern=r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
             replacement="[email]"),
    MaskRule(name="account id", pattern=r"\bACC-\d+\b", replacement="[account]"),
    MaskRule(name="account number", pattern=r"(?i)\b(account (?:number|no\.?|#))(\W{0,3})\d{6,}\b",
             replacement=r"\1\2[account]"),
    MaskRule(name="iban", pattern=r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b",
             replacement="[iban]"),
    MaskRule(name="card number", pattern=r"\b\d(?:[ -]?\d){12,18}\b", replacement="[card]", luhn=True),
    MaskRule(name="card code", pattern=r"(?i)\b(cvv2?|cvc2?|csc|security code)(\W{0,3})\d{3,4}\b",
             replacement=r"\1\2[code]"),
)
"""Sensitive whatever the domain: what every masker masks."""

POSTCODE_RULE = MaskRule(
    name="postcode", replacement=r"\1\2[postcode]",
    pattern=r"(?i)\b(post ?code|postal code|zip(?: ?code)?)(\W{0,3}(?:is\W{1,3})?)\d{5}(?:-\d{4})?\b",
)
"""A US postcode where the text says it is one ("postcode 90210", "zip: 10001-1234")."""

INTRODUCED_NAME_RULE = MaskRule(
    name="introduced name", replacement=r"\1[name]",
    pattern=r"(\b(?i:this is|my name is|name is|i am|i'm|call me)\s+)[A-Z][a-z'-]+(?:\s+[A-Z][a-z'-]+)?",
)
"""A capitalised name right after an introduction ("Hi, this is Dana", "my name is Lee Chen")."""

SENSITIVE_KEYS = frozenset({"account_id", "account_number", "email", "card_number", "card", "cvv", "cvc",
                            "iban", "password", "api_key"})
"""Values under these keys are masked whole, whatever they look like."""

_LABEL = r"\[[a-z ]+\]"  # a value some rule already replaced


def luhn_valid(digits: str) -> bool:
    """True when ``digits`` passes the Luhn checksum card numbers carry."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def known_values(
    *, names: Iterable[str] = (), postcodes: Iterable[str] = (), other: Iterable[str] = ()
) -> tuple[KnownValue, ...]:
    """Known values for a ``Sensitivity``: each full name and each of its words, postcodes, others."""
    values: dict[str, str] = {}
    for name in names:
        values[name] = "[name]"
        values.update({part: "[name]" for part in name.split() if len(part) >= 2})
    values.update({code: "[postcode]" for code in postcodes})
    values.update({text: MASKED for text in other})
    return tuple(KnownValue(text=text, label=label) for text, label in values.items())


class Sensitivity(BaseModel):
    """What one domain declares sensitive, for its traces and for the process's logs.

    ``Sensitivity.for_case_file(CaseFileModel, fields, ...)`` is the usual way to
    make one: the named case-file fields are checked against the model.
    """

    model_config = ConfigDict(frozen=True)

    keys: frozenset[str] = Field(
        default=frozenset(),
        description="Case-file fields, tool arguments and other keys whose values are masked whole.",
    )
    rules: tuple[MaskRule, ...] = Field(default=(), description="Patterns for the domain's own kinds of text.")
    values: tuple[KnownValue, ...] = Field(
        default=(), description="Literal values the domain's records hold, masked wherever they appear."
    )

    @classmethod
    def for_case_file(
        cls,
        case_file: type[BaseModel],
        fields: Iterable[str],
        *,
        keys: Iterable[str] = (),
        rules: Iterable[MaskRule] = (),
        values: Iterable[KnownValue] = (),
    ) -> Sensitivity:
        """The declaration of a domain whose case file has the sensitive ``fields``.

        Raises:
            ValueError: a field is not on ``case_file`` (a typo would leave it unmasked).
        """
        fields = tuple(fields)
        unknown = sorted(set(fields) - set(case_file.model_fields))
        if unknown:
            raise ValueError(f"{case_file.__name__} has no field(s) {', '.join(unknown)}")
        return cls(keys=frozenset((*fields, *keys)), rules=tuple(rules), values=tuple(values))

    def __or__(self, other: Sensitivity) -> Sensitivity:
        return Sensitivity(keys=self.keys | other.keys,
                           rules=tuple(dict.fromkeys((*self.rules, *other.rules))),
                           values=tuple(dict.fromkeys((*self.values, *other.values))))

    def masker(self) -> Masker:
        """The masker for this declaration and the default rules (made once per declaration)."""
        return masker_for(self)


@lru_cache(maxsize=64)
def masker_for(sensitivity: Sensitivity | None) -> Masker:
    """The masker of a declaration (``Masker()`` for None), shared by every run that needs it."""
    if sensitivity is None:
        return Masker()
    return Masker((*DEFAULT_MASK_RULES, *sensitivity.rules), keys=SENSITIVE_KEYS | sensitivity.keys,
                  values=sensitivity.values)


class Masker:
    """Masks sensitive text by pattern anywhere, and whole values under sensitive keys.

    Calling it on JSON-like data (as the langsmith ``anonymizer`` does) masks
    every string in place and returns the data.
    """

    def __init__(
        self,
        rules: Iterable[MaskRule] = DEFAULT_MASK_RULES,
        *,
        keys: Iterable[str] = SENSITIVE_KEYS,
        values: Iterable[KnownValue] = (),
        secrets: bool = True,
    ) -> None:
        """Args:
        rules: Patterns to mask wherever they occur.
        keys: Dict keys whose string values are masked whole, also where text spells them out.
        values: Literal values masked wherever they stand as whole words (any case).
        secrets: Also mask API keys and tokens (langsmith's ``DEFAULT_SECRET_RULES``).
        """
        self.rules = tuple(rules)
        self.keys = frozenset(k.lower() for k in keys)
        self._patterns = [(re.compile(r.pattern), r) for r in self.rules]
        self._labels = {v.text.lower(): v.label for v in values}
        self._values = _alternation(self._labels)
        self._key_values = _key_value_pattern(self.keys)
        self._secrets = [(rule["pattern"], rule.get("replace") or MASKED)
                         for rule in (DEFAULT_SECRET_RULES if secrets else [])]
        self._anonymize = create_anonymizer(self._mask_node)

    def text(self, value: str) -> str:
        """``value`` with every sensitive match replaced."""
        for pattern, rule in self._patterns:
            if rule.luhn:
                value = pattern.sub(
                    lambda m, r=rule: r.replacement if luhn_valid(re.sub(r"\D", "", m.group())) else m.group(),
                    value,
                )
            else:
                value = pattern.sub(rule.replacement, value)
        if self._values is not None:  # after the patterns, so an e-mail is masked as a whole
            value = self._values.sub(lambda m: self._labels[m.group().lower()], value)
        if self._key_values is not None:
            value = self._key_values.sub(_mask_key_value, value)
        for pattern, replacement in self._secrets:
            value = pattern.sub(replacement, value)
        return value

    def _mask_node(self, value: str, path: list[str | int]) -> str:
        key = next((p for p in reversed(path) if isinstance(p, str)), "")
        if value and key.lower() in self.keys:
            return MASKED
        return self.text(value)

    def __call__(self, data: Any) -> Any:
        return self._anonymize(data)


def _alternation(labels: dict[str, str]) -> re.Pattern[str] | None:
    """One pattern for all known values, longest first so a full name wins over its first word."""
    if not labels:
        return None
    texts = sorted(labels, key=len, reverse=True)
    return re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, texts)) + r")(?!\w)", re.IGNORECASE)


def _key_value_pattern(keys: frozenset[str]) -> re.Pattern[str] | None:
    """``key: value`` / ``"key": "value"`` / ``key=value`` (quotes possibly escaped) for any of ``keys``.

    This is how data shows up inside text: a tool call's JSON arguments, a dict's repr in a
    log line, a query string. A quoted value is masked up to its closing quote, a bare one
    up to the next space or delimiter.
    """
    if not keys:
        return None
    names = "|".join(map(re.escape, sorted(keys, key=len, reverse=True)))
    return re.compile(
        rf"(?<![\w-])(?P<head>(?:{names})\\?[\"']?\s*[:=]\s*)"
        rf"(?:(?P<q>\\?[\"'])(?!{_LABEL}(?P=q))(?P<quoted>.*?)(?P=q)"
        rf"|(?!{_LABEL})(?P<bare>[^\s\"',;}}\])\\]+))",
        re.IGNORECASE,
    )


def _mask_key_value(match: re.Match[str]) -> str:
    if match.group("q") is not None:
        return f"{match.group('head')}{match.group('q')}{MASKED}{match.group('q')}"
    return f"{match.group('head')}{MASKED}"
