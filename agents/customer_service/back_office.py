"""A small fake back office for the customer-service agents.

Accounts, service status, diagnostics and invoices are fixed in-repo data.
Refunds and tickets are ledger records (agents/ledger.py) in the
conversation's own store, keyed by an idempotency key, so a retried or
resumed step, a restarted service or a second worker never pays a refund twice.
"""

from __future__ import annotations

import math

from langgraph.store.base import BaseStore
from pydantic import BaseModel, ConfigDict

from handoff.agents.ledger import LedgerHome, LedgerRecord, ShareRefused


class Account(BaseModel):
    model_config = ConfigDict(frozen=True)

    account_id: str
    customer_name: str
    email: str
    postcode: str
    plan: str
    region: str


class Invoice(BaseModel):
    model_config = ConfigDict(frozen=True)

    invoice_id: str
    account_id: str
    amount: float
    description: str
    duplicate_of: str | None = None


class Refund(BaseModel):
    model_config = ConfigDict(frozen=True)

    refund_id: str
    idempotency_key: str
    account_id: str
    invoice_id: str
    amount: float


ACCOUNTS = {
    a.account_id: a
    for a in (
        Account(account_id="ACC-1001", customer_name="Dana Reyes", email="dana@example.com",
                postcode="90210", plan="Fiber 500", region="west"),
        Account(account_id="ACC-1002", customer_name="Sam Okafor", email="sam@example.com",
                postcode="10001", plan="Fiber 100", region="east"),
        Account(account_id="ACC-1003", customer_name="Lee Chen", email="lee@example.com",
                postcode="60601", plan="Mobile+", region="central"),
    )
}

INVOICES = {
    i.invoice_id: i
    for i in (
        Invoice(invoice_id="INV-2001", account_id="ACC-1001", amount=59.0,
                description="Fiber 500, October"),
        Invoice(invoice_id="INV-2002", account_id="ACC-1001", amount=59.0,
                description="Fiber 500, October (charged again)", duplicate_of="INV-2001"),
        Invoice(invoice_id="INV-2003", account_id="ACC-1002", amount=35.0,
                description="Fiber 100, October"),
    )
}

REGION_STATUS = {"west": "degraded: evening congestion on node W-7", "east": "operational",
                 "central": "operational"}


class BackOfficeError(ValueError):
    """A request the back office refuses; the message says why."""


IDENTITY_VERIFIED = "identity_verified"
"""The ledger fact (and case-file field) that an account's owner proved who they are."""


MAX_AMOUNT = 1e12
"""More than any invoice; amounts above it are refused as too much without being turned into cents."""


def cents(amount: float) -> int:
    return round(min(amount, MAX_AMOUNT) * 100)


def money(units: int) -> str:
    return f"{units / 100:.2f}"


class BackOffice(LedgerHome):
    """The fake systems.

    Accounts, service status, diagnostics and invoices are fixed in-repo data.
    Refunds and tickets, and which account owners were verified in which
    conversation, go to the ledger (agents/ledger.py) in the store passed in:
    the run's own (``ToolContext.store``), so they live where the conversations
    live and hold across restarts and workers. ``store=None`` uses this
    instance's process-local store (a graph compiled without one).
    """

    def account(self, account_id: str) -> Account:
        try:
            return ACCOUNTS[account_id]
        except KeyError:
            raise BackOfficeError(f"no account {account_id!r}") from None

    def verify(self, account_id: str, postcode: str) -> bool:
        return self.account(account_id).postcode == postcode

    def verify_owner(self, store: BaseStore | None, *, thread_id: str, account_id: str, postcode: str) -> bool:
        """Check the postcode and record the outcome for this conversation: a match establishes that
        the owner of ``account_id`` was verified in ``thread_id``; a mismatch withdraws it."""
        ok = self.verify(account_id, postcode)
        ledger = self.ledger(store)
        if ok:
            ledger.establish(thread_id, IDENTITY_VERIFIED, account_id,
                             holds_when={IDENTITY_VERIFIED: True, "account_id": account_id})
        else:
            ledger.revoke(thread_id, IDENTITY_VERIFIED, account_id)
        return ok

    def owner_verified(self, store: BaseStore | None, *, thread_id: str, account_id: str) -> bool:
        """Whether the owner of ``account_id`` was verified in conversation ``thread_id``."""
        return self.ledger(store).fact(thread_id, IDENTITY_VERIFIED, account_id) is not None

    def service_status(self, region: str) -> str:
        return REGION_STATUS.get(region, "unknown region")

    def diagnostics(self, account_id: str) -> str:
        account = self.account(account_id)
        if account.region == "west":
            return "line OK, packet loss 4% between 18:00 and 23:00 (node W-7 congestion)"
        return "line OK, no packet loss"

    def invoices(self, account_id: str) -> list[Invoice]:
        self.account(account_id)
        return [i for i in INVOICES.values() if i.account_id == account_id]

    def invoice(self, invoice_id: str) -> Invoice:
        try:
            return INVOICES[invoice_id]
        except KeyError:
            raise BackOfficeError(f"no invoice {invoice_id!r}") from None

    def refund(
        self, store: BaseStore | None, *, thread_id: str, idempotency_key: str, account_id: str,
        invoice_id: str, amount: float | None = None,
    ) -> tuple[Refund, bool]:
        """Pay a refund once per key. Returns the refund and whether it is new.

        Only for an invoice of ``account_id`` whose owner was verified in
        conversation ``thread_id`` (the ledger's record, not the case file);
        only a finite, positive amount, at most what the invoice has left
        after every other refund of it, in any conversation. No amount means
        all that is left.
        """
        invoice = self.invoice(invoice_id)
        if invoice.account_id != account_id:
            raise BackOfficeError(f"invoice {invoice_id!r} is not on account {account_id!r}")
        if not self.owner_verified(store, thread_id=thread_id, account_id=invoice.account_id):
            raise BackOfficeError(f"the owner of {invoice.account_id} has not been verified in this conversation")
        limit = cents(invoice.amount)
        if amount is not None and not (math.isfinite(amount) and cents(amount) > 0):
            raise BackOfficeError(
                f"refund amount {amount} is not a positive amount of money; {invoice_id} can be refunded "
                f"at most {money(limit - self._refunded(store, invoice_id))}")
        try:
            record, new = self.ledger(store).claim_share(
                "refund", idempotency_key, group=invoice_id, units=None if amount is None else cents(amount),
                limit=limit, prefix="RF", first=3001,
                data=lambda units: {"account_id": account_id, "invoice_id": invoice_id,
                                    "amount": units / 100, "thread_id": thread_id})
        except ShareRefused as refused:
            raise BackOfficeError(self._refusal(invoice, amount, refused)) from None
        return _refund(record), new

    def _refunded(self, store: BaseStore | None, invoice_id: str) -> int:
        return sum(r.units or 0 for r in self.ledger(store).records("refund", group=invoice_id))

    @staticmethod
    def _refusal(invoice: Invoice, amount: float | None, refused: ShareRefused) -> str:
        total = money(cents(invoice.amount))
        if refused.contended:
            return (f"other refunds of {invoice.invoice_id} are being paid at this moment and leave at most "
                    f"{money(refused.left)} of {total}; ask again in a moment")
        if refused.left <= 0:
            return f"{invoice.invoice_id} has already been refunded in full ({total}); nothing is left to refund"
        return (f"refund amount {amount} is more than {invoice.invoice_id} has left to refund: "
                f"at most {money(refused.left)} of {total}")

    def refunds(self, store: BaseStore | None, invoice_id: str | None = None) -> list[Refund]:
        """Every refund paid (of one invoice, if given), in any conversation."""
        return [_refund(r) for r in self.ledger(store).records("refund", group=invoice_id)]

    def open_ticket(self, store: BaseStore | None, *, idempotency_key: str, account_id: str, subject: str) -> str:
        """Open an engineering ticket once per key; returns its id."""
        record, _ = self.ledger(store).record_once(
            "ticket", idempotency_key, {"account_id": account_id, "subject": subject}, prefix="TKT", first=5001)
        return record.record_id

    def tickets(self, store: BaseStore | None) -> list[LedgerRecord]:
        """Every ticket opened, in any conversation."""
        return self.ledger(store).records("ticket")


def _refund(record: LedgerRecord) -> Refund:
    return Refund(refund_id=record.record_id, idempotency_key=record.key, account_id=record.data["account_id"],
                  invoice_id=record.data["invoice_id"], amount=record.data["amount"])
