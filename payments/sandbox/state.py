"""
The sandbox gateway's memory: transactions, the rules that move them, and the log of calls.

Decisions:
- One lock guards all of it. Every public method holds it for its whole read-check-write, so two refunds
  racing for the same paid amount are decided one after the other, as the row lock in the real gateway
  (and in our own services) decides them. One lock is easy to reason about and fast enough for a test tool.
- Refunded and captured totals are summed from the follow-up transactions, never kept in a counter that
  could drift; an in-progress refund (status 0) already holds its amount, so a second refund cannot spend it.
- Every move into a final status (2, 1, 3) goes through ``_finish``, which hands the notification to the
  notifier; no path can forget one. The notifier only starts a thread, so calling it under the lock is cheap.
- Orders expire lazily: whoever reads an order past ``expires`` closes it first (status 1). That is what a
  caller of the real gateway sees, without a timer thread per order. An authorization never captured is
  released the same way after ``AUTHORIZATION_HOLD_SECONDS`` (status 3, reason authorization_expired), or
  at once through the control API's ``expire``.
- Card numbers never reach this module: the card checkout passes only the last four digits and the brand.
- Follow-ups on a pre-authorization obey ``payments.gateway.methods.FOLLOW_UPS`` strictly: one capture
  per authorization; captured money is refunded, re-tipped and voided through the capture's own trans_no
  (trans_types 8 and 7); the authorization named instead is refused, as the real gateway would refuse a
  reference it does not accept (docs/protocol.md, "Follow-ups").
- With a ``store`` (``store.py``), every transaction is written to disk when it changes, under the same
  lock, and read back at start-up: a restarted sandbox knows every order, as the real gateway would, and
  goes on delivering the notifications it had not delivered yet.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterable
from decimal import Decimal

from payments.gateway.methods import FOLLOW_UPS, FollowUpKind, TransStatus, TransType
from payments.gateway.vocabulary import QR_PAY_SCENARIOS

from . import errors
from .errors import require, require_found
from .store import SandboxStore
from .transactions import (
    FINAL_STATUSES,
    OPEN_STATUSES,
    REFUND_TYPES,
    REFUNDABLE_TYPES,
    SETTLED_TYPES,
    VOIDABLE_TYPES,
    Channel,
    Transaction,
    gateway_time,
)

# How long an uncaptured authorization holds the money (inferred: card schemes release most holds in 7 days).
AUTHORIZATION_HOLD_SECONDS = 7 * 24 * 3600


class SandboxState:
    def __init__(
        self,
        *,
        notify: Callable[[str, dict[str, str]], None],
        clock: Callable[[], float] = time.time,
        store: SandboxStore | None = None,
    ):
        self._notify = notify
        self._clock = clock
        self._store = store
        self._lock = threading.Lock()
        self._by_trans_no: dict[str, Transaction] = {}
        self._by_order_no: dict[tuple[str, str], Transaction] = {}
        self._calls: list[dict] = []
        if store is not None:
            transactions, self._calls = store.load()
            for txn in transactions:
                self._by_trans_no[txn.trans_no] = txn
                self._by_order_no[(txn.merchant_no, txn.merchant_order_no)] = txn
        # Serial numbers keep counting across resets and restarts, so a trans_no is never handed out twice.
        last_serial = max((int(trans_no[-16:]) for trans_no in self._by_trans_no), default=0)
        self._serials = itertools.count(last_serial + 1)

    def reset(self) -> None:
        with self._lock:
            self._by_trans_no.clear()
            self._by_order_no.clear()
            self._calls.clear()
            if self._store is not None:
                self._store.clear()

    def resume_notifications(self) -> int:
        """Deliver again every final transaction's notification that no earlier process delivered (or
        dropped on purpose); the real gateway keeps retrying through its own restarts. Returns how many."""
        with self._lock:
            pending = [
                txn
                for txn in self._by_trans_no.values()
                if txn.notify_url
                and txn.status in FINAL_STATUSES
                and not any(a["outcome"] in ("delivered", "dropped") for a in txn.notification_attempts)
            ]
            for txn in pending:
                self._notify(txn.notify_url, txn.notification_fields())
            return len(pending)

    def _save(self, *transactions: Transaction) -> None:
        if self._store is not None:
            for txn in transactions:
                self._store.save(txn)

    def next_serial(self) -> int:
        with self._lock:
            return next(self._serials)

    # --- creation ----------------------------------------------------------------------------------

    def add(
        self,
        *,
        app_id: str,
        merchant_no: str,
        merchant_order_no: str,
        trans_type: TransType,
        channel: Channel,
        price_currency: str,
        order_amount: Decimal,
        expires: int | None,
        status: TransStatus = TransStatus.CREATED,
        close_reason: str = "",
        orig_merchant_order_no: str = "",
        **details,
    ) -> dict:
        """Record a new order; a terminal void, refund or completion is checked against its original now
        and again when the terminal completes it."""
        with self._lock:
            original = None
            if orig_merchant_order_no:
                original = self._find(merchant_no, merchant_order_no=orig_merchant_order_no)
                require(original.price_currency == price_currency, errors.CURRENCY_MISMATCH)
                self._check_follow_up(trans_type, original, order_amount)
            txn = self._create(
                app_id=app_id,
                merchant_no=merchant_no,
                merchant_order_no=merchant_order_no,
                trans_type=trans_type,
                channel=channel,
                price_currency=price_currency,
                order_amount=order_amount,
                expires=expires,
                original=original,
                **details,
            )
            if status in FINAL_STATUSES:
                self._finish(txn, status, close_reason)
            else:
                txn.status = status
                self._save(txn)
            return txn.public_fields()

    def _create(
        self, *, merchant_no: str, merchant_order_no: str, original: Transaction | None, **values
    ) -> Transaction:
        require((merchant_no, merchant_order_no) not in self._by_order_no, errors.DUPLICATE_MERCHANT_ORDER_NO)
        now = self._clock()
        trans_no = f"5{gateway_time(now)[2:10].replace('-', '')}{next(self._serials):016d}"
        txn = Transaction(
            trans_no=trans_no,
            merchant_no=merchant_no,
            merchant_order_no=merchant_order_no,
            created_at=now,
            original=original,
            **values,
        )
        if original is not None:
            original.follow_ups.append(txn)
        self._by_trans_no[trans_no] = txn
        self._by_order_no[(merchant_no, merchant_order_no)] = txn
        self._save(txn)
        return txn

    def _create_follow_up(
        self, original: Transaction, *, merchant_order_no: str, trans_type: TransType, order_amount: Decimal, **values
    ) -> Transaction:
        """A capture, refund or cancel made by an API call: it inherits where and how the original was paid."""
        inherited = {
            "app_id": original.app_id,
            "channel": original.channel,
            "price_currency": original.price_currency,
            "store_no": original.store_no,
            "terminal_sn": original.terminal_sn,
            "pay_scenario": original.pay_scenario,
            "pay_method_id": original.pay_method_id,
            "attach": original.attach,
            "notify_url": original.notify_url,
        }
        inherited.update((key, value) for key, value in values.items() if value)
        return self._create(
            merchant_no=original.merchant_no,
            merchant_order_no=merchant_order_no,
            original=original,
            trans_type=trans_type,
            order_amount=order_amount,
            expires=None,
            **inherited,
        )

    # --- lookups -----------------------------------------------------------------------------------

    def get(self, merchant_no: str, *, trans_no: str = "", merchant_order_no: str = "", refund: bool = False) -> dict:
        """A transaction's public fields, by trans_no when given, else by merchant_order_no (order.query rule)."""
        with self._lock:
            txn = self._find(merchant_no, trans_no=trans_no, merchant_order_no=merchant_order_no)
            require(not refund or txn.trans_type in REFUND_TYPES, errors.ORDER_NOT_FOUND)
            return txn.public_fields()

    def control_view(self, merchant_order_no: str, merchant_no: str = "") -> dict:
        with self._lock:
            return self._find_for_control(merchant_order_no, merchant_no).control_view()

    def control_views(self, merchant_no: str = "") -> list[dict]:
        """Every transaction of ``merchant_no`` (of all merchants when empty), oldest first, each read as a
        query would read it (an order past its expiry is closed first)."""
        with self._lock:
            views = []
            for txn in self._by_trans_no.values():
                if merchant_no in ("", txn.merchant_no):
                    self._expire_if_due(txn)
                    views.append(txn.control_view())
            return views

    def _find(self, merchant_no: str, *, trans_no: str = "", merchant_order_no: str = "") -> Transaction:
        if trans_no:
            txn = self._by_trans_no.get(trans_no)
            txn = txn if txn is not None and txn.merchant_no == merchant_no else None
        else:
            txn = self._by_order_no.get((merchant_no, merchant_order_no))
        found = require_found(txn, errors.ORDER_NOT_FOUND)
        self._expire_if_due(found)
        return found

    def _find_for_control(self, merchant_order_no: str, merchant_no: str) -> Transaction:
        """The control API names orders by merchant_order_no alone; merchant_no settles a clash between merchants."""
        matches = [
            txn
            for (owner, order_no), txn in self._by_order_no.items()
            if order_no == merchant_order_no and merchant_no in ("", owner)
        ]
        require(bool(matches), errors.ORDER_NOT_FOUND)
        require(len(matches) == 1, errors.INVALID_PARAMETER, "several merchants use this number; add ?merchant_no=")
        self._expire_if_due(matches[0])
        return matches[0]

    def _expire_if_due(self, txn: Transaction) -> None:
        if txn.status in OPEN_STATUSES and txn.expires and self._clock() > txn.created_at + txn.expires:
            self._finish(txn, TransStatus.CLOSED, "expired")
        elif (
            self._uncaptured_authorization(txn)
            and txn.end_time is not None
            and self._clock() > txn.end_time + AUTHORIZATION_HOLD_SECONDS
        ):
            self._finish(txn, TransStatus.CANCELLED, "authorization_expired")

    @staticmethod
    def _uncaptured_authorization(txn: Transaction) -> bool:
        return txn.trans_type is TransType.PRE_AUTH and txn.status is TransStatus.SUCCESS and txn.completion is None

    # --- transitions -------------------------------------------------------------------------------

    def _finish(self, txn: Transaction, status: TransStatus, reason: str = "") -> None:
        txn.status = status
        txn.end_time = self._clock()
        txn.close_reason = reason
        self._save(txn)
        if txn.notify_url:
            self._notify(txn.notify_url, txn.notification_fields())

    def _check_follow_up(self, trans_type: TransType, original: Transaction, amount: Decimal) -> None:
        """The rules a void, refund or completion must meet against its original, wherever it comes from."""
        if trans_type is TransType.VOID:
            self._check_voidable(original)
        elif trans_type is TransType.REFUND:
            self._check_refundable(original, amount)
        elif trans_type is TransType.PRE_AUTH_COMPLETION:
            self._check_capturable(original, amount)

    @staticmethod
    def _check_refundable(original: Transaction, amount: Decimal) -> None:
        require(
            original.trans_type is not TransType.PRE_AUTH,
            errors.TRANS_TYPE_NOT_ALLOWED,
            "an authorization moved no money; refund its capture (trans_type 6) by the capture's trans_no",
        )
        require(original.trans_type in REFUNDABLE_TYPES, errors.TRANS_TYPE_NOT_ALLOWED)
        require(original.status is TransStatus.SUCCESS, errors.ORDER_STATUS_INVALID)
        require(
            amount <= original.refundable_amount,
            errors.REFUND_EXCEEDS_PAID,
            f"at most {original.money(original.refundable_amount)} {original.price_currency} is refundable",
        )

    @staticmethod
    def _check_voidable(original: Transaction) -> None:
        require(original.trans_type in VOIDABLE_TYPES, errors.TRANS_TYPE_NOT_ALLOWED)
        require(original.status is TransStatus.SUCCESS, errors.ORDER_STATUS_INVALID)
        require(not original.batched, errors.BATCH_CLOSED)

    @staticmethod
    def _check_capturable(authorization: Transaction, amount: Decimal) -> None:
        require(authorization.trans_type is TransType.PRE_AUTH, errors.TRANS_TYPE_NOT_ALLOWED)
        require(authorization.status is TransStatus.SUCCESS, errors.ORDER_STATUS_INVALID)
        require(
            authorization.completion is None,
            errors.ORDER_STATUS_INVALID,
            "the authorization is already captured; one capture per authorization",
        )
        require(
            amount <= authorization.capturable_amount,
            errors.CAPTURE_EXCEEDS_AUTHORIZED,
            f"at most {authorization.money(authorization.capturable_amount)} can be captured",
        )

    # --- the terminal and the customer (control API) ----------------------------------------------

    def pay(
        self,
        merchant_order_no: str,
        *,
        merchant_no: str = "",
        pay_method_id: str = "",
        **amounts: Decimal,
    ) -> dict:
        """The customer pays (or the card is authorized, for a pre-auth); a terminal follow-up takes effect.
        ``amounts``: the tip entered on the terminal, the discounts and the fee the payment ends with."""
        with self._lock:
            txn = self._find_for_control(merchant_order_no, merchant_no)
            require(txn.status in OPEN_STATUSES, errors.ORDER_STATUS_INVALID)
            for name, value in amounts.items():
                setattr(txn, name, value)
            if txn.original is not None:
                self._check_follow_up(txn.trans_type, txn.original, txn.trans_amount)
                if txn.trans_type is TransType.VOID:
                    self._finish(txn.original, TransStatus.CANCELLED, "voided")
            txn.pay_method_id = pay_method_id or txn.pay_method_id or "Visa"
            self._finish(txn, TransStatus.SUCCESS)
            return txn.control_view()

    def close_unpaid(self, merchant_order_no: str, *, reason: str, merchant_no: str = "") -> dict:
        """The customer declines or walks away, or the order runs out of time: status 1. An uncaptured
        authorization that runs out of time is released instead: status 3."""
        with self._lock:
            txn = self._find_for_control(merchant_order_no, merchant_no)
            if reason == "expired" and self._uncaptured_authorization(txn):
                self._finish(txn, TransStatus.CANCELLED, "authorization_expired")
                return txn.control_view()
            require(txn.status in OPEN_STATUSES, errors.ORDER_STATUS_INVALID)
            self._finish(txn, TransStatus.CLOSED, reason)
            return txn.control_view()

    def finish_3ds(self, merchant_order_no: str, *, authenticated: bool, merchant_no: str = "") -> dict:
        with self._lock:
            txn = self._find_for_control(merchant_order_no, merchant_no)
            require(txn.channel is Channel.MERCHANT_CHECKOUT, errors.TRANS_TYPE_NOT_ALLOWED)
            require(txn.status is TransStatus.IN_PROGRESS, errors.ORDER_STATUS_INVALID)
            if authenticated:
                self._finish(txn, TransStatus.SUCCESS)
            else:
                self._finish(txn, TransStatus.CLOSED, "3ds_failed")
            return txn.control_view()

    def finish_refund(self, merchant_order_no: str, *, succeeded: bool, merchant_no: str = "") -> dict:
        with self._lock:
            txn = self._find_for_control(merchant_order_no, merchant_no)
            require(txn.trans_type in REFUND_TYPES, errors.TRANS_TYPE_NOT_ALLOWED)
            require(txn.status is TransStatus.IN_PROGRESS, errors.ORDER_STATUS_INVALID)
            if succeeded:
                self._finish(txn, TransStatus.SUCCESS)
            else:
                self._finish(txn, TransStatus.CLOSED, "refund_failed")
            return txn.control_view()

    # --- merchant operations on existing transactions ----------------------------------------------

    def close_by_merchant(self, merchant_no: str, merchant_order_no: str) -> dict:
        """wisehub.cloud.pay.close: only an order still waiting on the terminal (status 9) can be closed."""
        with self._lock:
            txn = self._find(merchant_no, merchant_order_no=merchant_order_no)
            require(txn.status is TransStatus.CREATED, errors.ORDER_STATUS_INVALID)
            self._finish(txn, TransStatus.CLOSED, "closed_by_merchant")
            return txn.public_fields()

    def revoke(self, merchant_no: str, merchant_order_no: str) -> dict:
        """order.revoker: close an unpaid order, refund a paid QR or online one; a card-present sale is refused.

        Revoking an order that is already closed or cancelled succeeds again without change: the reference
        tells merchants to repeat the call when the outcome is unclear.
        """
        with self._lock:
            txn = self._find(merchant_no, merchant_order_no=merchant_order_no)
            if txn.status in OPEN_STATUSES:
                self._finish(txn, TransStatus.CLOSED, "revoked")
            elif txn.status is TransStatus.SUCCESS:
                require(txn.trans_type is TransType.SALE, errors.TRANS_TYPE_NOT_ALLOWED)
                online = txn.channel is not Channel.TERMINAL or txn.pay_scenario in QR_PAY_SCENARIOS
                require(online, errors.REVOKE_NOT_SUPPORTED)
                self._finish(txn, TransStatus.CANCELLED, "revoked")
            return txn.public_fields()

    def capture(self, merchant_no: str, *, trans_no: str, merchant_order_no: str, amount: Decimal) -> dict:
        with self._lock:
            authorization = self._find(merchant_no, trans_no=trans_no)
            self._check_capturable(authorization, amount)
            capture = self._create_follow_up(
                authorization,
                merchant_order_no=merchant_order_no,
                trans_type=TransType.PRE_AUTH_COMPLETION,
                order_amount=amount,
            )
            self._finish(capture, TransStatus.SUCCESS)
            return capture.public_fields()

    def increment_authorization(self, merchant_no: str, *, trans_no: str, amount: Decimal) -> dict:
        with self._lock:
            authorization = self._find(merchant_no, trans_no=trans_no)
            require(authorization.trans_type is TransType.PRE_AUTH, errors.TRANS_TYPE_NOT_ALLOWED)
            require(authorization.status is TransStatus.SUCCESS, errors.ORDER_STATUS_INVALID)
            require(
                authorization.completion is None, errors.ORDER_STATUS_INVALID, "the authorization is already captured"
            )
            authorization.incremented_amount += amount
            self._save(authorization)
            return authorization.public_fields()

    def cancel_payment(self, merchant_no: str, *, trans_no: str, merchant_order_no: str) -> dict:
        """Cancel Payment: void an uncaptured authorization (trans_type 5) or, named by its own trans_no,
        a capture not yet in a closed batch (trans_type 7), which releases the authorization with it."""
        with self._lock:
            original = self._find(merchant_no, trans_no=trans_no)
            if original.trans_type is TransType.PRE_AUTH_COMPLETION:
                return self._cancel_completion(original, merchant_order_no).public_fields()
            require(original.trans_type is TransType.PRE_AUTH, errors.TRANS_TYPE_NOT_ALLOWED)
            require(original.status is TransStatus.SUCCESS, errors.ORDER_STATUS_INVALID)
            require(
                original.completion is None,
                errors.ORDER_STATUS_INVALID,
                "the authorization is already captured; void the capture by its own trans_no",
            )
            return self._void(
                original, FollowUpKind.VOID_AUTHORIZATION, merchant_order_no, "authorization_cancelled"
            ).public_fields()

    def _cancel_completion(self, completion: Transaction, merchant_order_no: str) -> Transaction:
        require(completion.status is TransStatus.SUCCESS, errors.ORDER_STATUS_INVALID)
        require(not completion.batched, errors.BATCH_CLOSED)
        refunded = completion.followed_amount(REFUND_TYPES, {TransStatus.IN_PROGRESS, TransStatus.SUCCESS})
        require(refunded == 0, errors.ORDER_STATUS_INVALID, "the capture is partly refunded; refund the rest instead")
        cancel = self._void(completion, FollowUpKind.VOID_COMPLETION, merchant_order_no, "completion_cancelled")
        if completion.original is not None and completion.original.status is TransStatus.SUCCESS:
            self._finish(completion.original, TransStatus.CANCELLED, "completion_cancelled")
        return cancel

    def _void(self, original: Transaction, kind: FollowUpKind, merchant_order_no: str, reason: str) -> Transaction:
        """The void transaction (trans_type 5 or 7, from FOLLOW_UPS) of the whole ``original``, which is cancelled."""
        cancel = self._create_follow_up(
            original,
            merchant_order_no=merchant_order_no,
            trans_type=_created_by(kind),
            order_amount=original.trans_amount,
        )
        self._finish(cancel, TransStatus.SUCCESS)
        self._finish(original, TransStatus.CANCELLED, reason)
        return cancel

    def refund(
        self,
        merchant_no: str,
        *,
        orig_trans_no: str = "",
        orig_merchant_order_no: str = "",
        merchant_order_no: str,
        order_amount: Decimal,
        tip_amount: Decimal = Decimal(0),
        price_currency: str = "",
        description: str = "",
        notify_url: str = "",
        completes_later: bool = False,
    ) -> dict:
        """A refund of a paid sale or capture; it completes now, or stays in progress (status 0) when
        ``completes_later``, holding its amount until the control API completes or fails it."""
        with self._lock:
            original = self._find(merchant_no, trans_no=orig_trans_no, merchant_order_no=orig_merchant_order_no)
            require(price_currency in ("", original.price_currency), errors.CURRENCY_MISMATCH)
            self._check_refundable(original, order_amount + tip_amount)
            kind = (
                FollowUpKind.REFUND_COMPLETION
                if original.trans_type is TransType.PRE_AUTH_COMPLETION
                else FollowUpKind.REFUND_PAYMENT
            )
            refund = self._create_follow_up(
                original,
                merchant_order_no=merchant_order_no,
                trans_type=_created_by(kind),
                order_amount=order_amount,
                tip_amount=tip_amount,
                description=description,
                notify_url=notify_url,
            )
            if completes_later:
                refund.status = TransStatus.IN_PROGRESS
                self._save(refund)
            else:
                self._finish(refund, TransStatus.SUCCESS)
            return refund.public_fields()

    def adjust_tip(
        self, merchant_no: str, *, trans_no: str = "", merchant_order_no: str = "", tip_amount: Decimal
    ) -> dict:
        """Set the tip (the new total, ``TIP_ADJUSTMENT_MEANING``) of a successful sale or capture that is
        not yet in a closed batch. An authorization is refused: its tip goes on its capture."""
        with self._lock:
            txn = self._find(merchant_no, trans_no=trans_no, merchant_order_no=merchant_order_no)
            require(
                txn.trans_type is not TransType.PRE_AUTH,
                errors.TRANS_TYPE_NOT_ALLOWED,
                "adjust the tip of a captured authorization on its capture (trans_type 6)",
            )
            require(txn.trans_type in (TransType.SALE, TransType.PRE_AUTH_COMPLETION), errors.TRANS_TYPE_NOT_ALLOWED)
            require(txn.status is TransStatus.SUCCESS, errors.ORDER_STATUS_INVALID)
            require(not txn.batched, errors.BATCH_CLOSED)
            refunded = txn.paid_amount - txn.refundable_amount
            require(txn.trans_amount - txn.tip_amount + tip_amount >= refunded, errors.REFUND_EXCEEDS_PAID)
            txn.tip_amount = tip_amount
            self._save(txn)
            return txn.public_fields()

    # --- batches -----------------------------------------------------------------------------------

    def batch(self, merchant_no: str, *, store_no: str = "", terminal_sns: Iterable[str] = (), close: bool) -> dict:
        """Count and total the successful, not yet batched card-present transactions of the selected
        terminals (all terminals of the merchant, or of ``store_no``, when none is named); close them
        into a batch when ``close``. Refunds count against the total. One merchant settles in one
        currency, so the total is formatted in the currency of the first transaction."""
        terminal_sns = frozenset(terminal_sns)
        with self._lock:
            selected = [
                txn
                for txn in self._by_trans_no.values()
                if txn.merchant_no == merchant_no
                and txn.terminal_sn
                and txn.status is TransStatus.SUCCESS
                and txn.trans_type in SETTLED_TYPES
                and not txn.batched
                and store_no in ("", txn.store_no)
                and (not terminal_sns or txn.terminal_sn in terminal_sns)
            ]
            total = sum(
                (-txn.trans_amount if txn.trans_type in REFUND_TYPES else txn.trans_amount for txn in selected),
                Decimal(0),
            )
            if close:
                for txn in selected:
                    txn.batched = True
                self._save(*selected)
            return {
                "count": str(len(selected)),
                "total_amount": selected[0].money(total) if selected else "0",
            }

    # --- records -----------------------------------------------------------------------------------

    def record_call(self, call: dict) -> None:
        with self._lock:
            self._calls.append(call)
            if self._store is not None:
                self._store.add_call(call)

    def calls(self) -> list[dict]:
        with self._lock:
            return list(self._calls)

    def record_notification_attempt(self, trans_no: str, attempt: dict) -> None:
        with self._lock:
            txn = self._by_trans_no.get(trans_no)
            # A delivery that outlived a reset has nothing left to report to.
            if txn is not None:
                txn.notification_attempts.append(attempt)
                self._save(txn)


def _created_by(kind: FollowUpKind) -> TransType:
    """The trans_type a void or refund creates; FOLLOW_UPS leaves it empty only for kinds that create none."""
    creates = FOLLOW_UPS[kind].creates
    if creates is None:
        raise ValueError(f"the {kind} follow-up creates no transaction")
    return creates
