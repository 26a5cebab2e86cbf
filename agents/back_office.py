"""A small fake back office for the customer-service agents.

Accounts, service status, diagnostics and invoices are fixed in-repo data.
Refunds and tickets are written to SQLite and keyed by an idempotency key, so
a retried or resumed step never pays a refund twice.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from pydantic import BaseModel, ConfigDict


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


class BackOffice:
    """The fake systems. ``path`` is a SQLite file for refunds and tickets."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS refunds (idempotency_key TEXT PRIMARY KEY, refund_id TEXT,"
            " account_id TEXT, invoice_id TEXT, amount REAL)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS tickets (idempotency_key TEXT PRIMARY KEY, ticket_id TEXT,"
            " account_id TEXT, subject TEXT)"
        )

    def account(self, account_id: str) -> Account:
        try:
            return ACCOUNTS[account_id]
        except KeyError:
            raise BackOfficeError(f"no account {account_id!r}") from None

    def verify(self, account_id: str, postcode: str) -> bool:
        return self.account(account_id).postcode == postcode

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

    def refund(self, *, idempotency_key: str, account_id: str, invoice_id: str,
               amount: float | None = None) -> tuple[Refund, bool]:
        """Pay a refund once per key. Returns the refund and whether it is new."""
        invoice = INVOICES.get(invoice_id)
        if invoice is None or invoice.account_id != account_id:
            raise BackOfficeError(f"invoice {invoice_id!r} is not on account {account_id!r}")
        value = invoice.amount if amount is None else amount
        if value <= 0 or value > invoice.amount:
            raise BackOfficeError(f"refund {value} is outside 0..{invoice.amount} for {invoice_id}")
        with self._lock:
            row = self._db.execute(
                "SELECT refund_id, account_id, invoice_id, amount FROM refunds"
                " WHERE idempotency_key = ?", (idempotency_key,)
            ).fetchone()
            if row:
                return Refund(refund_id=row[0], idempotency_key=idempotency_key,
                              account_id=row[1], invoice_id=row[2], amount=row[3]), False
            count = self._db.execute("SELECT COUNT(*) FROM refunds").fetchone()[0]
            refund = Refund(refund_id=f"RF-{3001 + count}", idempotency_key=idempotency_key,
                            account_id=account_id, invoice_id=invoice_id, amount=value)
            self._db.execute(
                "INSERT INTO refunds VALUES (?, ?, ?, ?, ?)",
                (idempotency_key, refund.refund_id, account_id, invoice_id, value),
            )
            return refund, True

    def refunds(self) -> list[Refund]:
        rows = self._db.execute(
            "SELECT idempotency_key, refund_id, account_id, invoice_id, amount FROM refunds"
        ).fetchall()
        return [Refund(idempotency_key=r[0], refund_id=r[1], account_id=r[2], invoice_id=r[3],
                       amount=r[4]) for r in rows]

    def open_ticket(self, *, idempotency_key: str, account_id: str, subject: str) -> str:
        with self._lock:
            row = self._db.execute(
                "SELECT ticket_id FROM tickets WHERE idempotency_key = ?", (idempotency_key,)
            ).fetchone()
            if row:
                return row[0]
            count = self._db.execute("SELECT COUNT(*) FROM tickets").fetchone()[0]
            ticket_id = f"TKT-{5001 + count}"
            self._db.execute("INSERT INTO tickets VALUES (?, ?, ?, ?)",
                             (idempotency_key, ticket_id, account_id, subject))
            return ticket_id
