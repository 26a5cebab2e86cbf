"""Masking sensitive text before it leaves the process (the anonymizer of LangSmith clients).

``Masker`` replaces account ids and numbers, IBANs, card numbers (Luhn-checked),
card codes and e-mail addresses by pattern anywhere, whole values under
sensitive keys (``account_id``, ``email``, ...), and API keys and tokens with
langsmith's own ``DEFAULT_SECRET_RULES``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from langsmith.anonymizer import DEFAULT_SECRET_RULES, create_anonymizer
from pydantic import BaseModel, ConfigDict, Field


class MaskRule(BaseModel):
    """One kind of sensitive text: a pattern and what replaces it."""

    model_config = ConfigDict(frozen=True)

    name: str
    pattern: str
    replacement: str = Field(description="May refer to the pattern's groups, e.g. r'\\1 [code]'.")
    luhn: bool = Field(default=False, description="Mask only digit runs that pass the Luhn check.")


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

SENSITIVE_KEYS = frozenset({"account_id", "account_number", "email", "card_number", "card", "cvv", "cvc",
                            "iban"})
"""Values under these keys are masked whole, whatever they look like."""

MASKED = "[masked]"


def luhn_valid(digits: str) -> bool:
    """True when ``digits`` passes the Luhn checksum card numbers carry."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


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
        secrets: bool = True,
    ) -> None:
        """Args:
        rules: Patterns to mask wherever they occur.
        keys: Dict keys whose string values are masked whole.
        secrets: Also mask API keys and tokens (langsmith's ``DEFAULT_SECRET_RULES``).
        """
        self.rules = tuple(rules)
        self.keys = frozenset(k.lower() for k in keys)
        self._patterns = [(re.compile(r.pattern), r) for r in self.rules]
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
