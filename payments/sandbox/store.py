"""
The sandbox's memory on disk, so a killed and restarted sandbox still knows every transaction.

The real gateway never forgets an order because its front end restarted; a sandbox that did would turn
every restart in ``make run`` or the chaos run into orders "not found" that the service then fails. So
``SandboxState`` writes each transaction it changes, and each call it logs, to a SQLite file
(``sandbox.sqlite3`` in the folder given by ``--state-dir`` or ``CODEPAY_SANDBOX_STATE_DIR``).

Decisions:
- SQLite from the standard library: one file, atomic writes, nothing to install. Write-ahead logging
  with ``synchronous=NORMAL`` keeps every committed write across a process kill (only a power loss may
  drop the last ones, which the sandbox does not need to survive).
- A transaction is stored whole as JSON under its trans_no, rewritten on every change. Rows are small,
  and the state's lock already serialises every change, so there is no merge to get wrong.
- Only the state's lock holder touches the connection, so one connection shared across threads is safe.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import fields
from decimal import Decimal
from enum import Enum
from pathlib import Path

from payments.gateway.methods import TransStatus, TransType

from .transactions import Channel, Transaction

FILE_NAME = "sandbox.sqlite3"
# Stored as their trans_no (``original``) or not at all (``follow_ups``, rebuilt from ``original``).
LINK_FIELDS = frozenset({"original", "follow_ups"})
# Field types stored as text and rebuilt by their annotation, so a field added to Transaction is kept too.
TEXT_TYPES = {"TransType": TransType, "TransStatus": TransStatus, "Channel": Channel, "Decimal": Decimal}


class SandboxStore:
    def __init__(self, folder: str | Path):
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / FILE_NAME
        # Autocommit: every statement is its own transaction, committed before the state's lock is released.
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS transactions (trans_no TEXT PRIMARY KEY, body TEXT NOT NULL)")
        self._db.execute("CREATE TABLE IF NOT EXISTS calls (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL)")

    def save(self, txn: Transaction) -> None:
        self._db.execute(
            "INSERT INTO transactions (trans_no, body) VALUES (?, ?) "
            "ON CONFLICT (trans_no) DO UPDATE SET body = excluded.body",
            (txn.trans_no, json.dumps(_to_json(txn))),
        )

    def add_call(self, call: dict) -> None:
        self._db.execute("INSERT INTO calls (body) VALUES (?)", (json.dumps(call),))

    def clear(self) -> None:
        self._db.execute("DELETE FROM transactions")
        self._db.execute("DELETE FROM calls")

    def load(self) -> tuple[list[Transaction], list[dict]]:
        """Every stored transaction, in creation order with ``original`` and ``follow_ups`` linked, and the calls."""
        rows = [json.loads(body) for (body,) in self._db.execute("SELECT body FROM transactions")]
        rows.sort(key=lambda row: (row["created_at"], row["trans_no"]))
        by_trans_no: dict[str, Transaction] = {}
        for row in rows:
            original_trans_no = row.pop("original")
            txn = _from_json(row)
            if original_trans_no:
                txn.original = by_trans_no[original_trans_no]
                txn.original.follow_ups.append(txn)
            by_trans_no[txn.trans_no] = txn
        calls = [json.loads(body) for (body,) in self._db.execute("SELECT body FROM calls ORDER BY id")]
        return list(by_trans_no.values()), calls

    def close(self) -> None:
        self._db.close()


def _to_json(txn: Transaction) -> dict:
    row = {}
    for field in fields(Transaction):
        if field.name in LINK_FIELDS:
            continue
        value = getattr(txn, field.name)
        if isinstance(value, Enum):
            value = value.value
        elif isinstance(value, Decimal):
            value = str(value)
        row[field.name] = value
    row["original"] = txn.original.trans_no if txn.original is not None else ""
    return row


def _from_json(row: dict) -> Transaction:
    values = dict(row)
    for field in fields(Transaction):
        # Annotations are text here (``from __future__ import annotations``): "Decimal", "Decimal | None"...
        kind = TEXT_TYPES.get(str(field.type).split("|")[0].strip())
        if kind is not None and values.get(field.name) is not None:
            values[field.name] = kind(values[field.name])
    return Transaction(**values)
