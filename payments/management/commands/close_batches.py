"""``manage.py close_batches``: close terminal batches on demand, or run the due schedules once."""

import logging
from functools import partial

from django.core.management.base import BaseCommand, CommandError

from codepay_service.errors import ServiceError
from payments.management.progress import progress
from payments.models import BatchClose, MerchantAccount
from payments.services.accounts import merchant_account_sync_default
from payments.services.batches import batch_close, batch_close_attempt, batch_schedules_open_due

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "With --now: close the open batch now (each --store, or the whole merchant account), through the same "
        "service as the API. Without it: record and send the closes of the schedules that are due, like the beat task."
    )

    def add_arguments(self, parser):
        parser.add_argument("--now", action="store_true", help="Close now instead of running the due schedules.")
        parser.add_argument("--store", action="append", default=[], help="A store_no to close (repeatable).")
        parser.add_argument(
            "--terminal", action="append", default=[], help="Only these terminal serial numbers (repeatable)."
        )
        parser.add_argument(
            "--account", help="Merchant account id or code (default: the account from CODEPAY_* settings)."
        )

    def handle(self, *args, **options):
        self.verbosity = options["verbosity"]
        if not options["now"]:
            if options["store"] or options["terminal"]:
                raise CommandError("--store and --terminal go with --now.")
            closes = [partial(batch_close_attempt, batch=batch) for batch in batch_schedules_open_due()]
            if not closes:
                self.stdout.write("No schedule is due.")
                return
        else:
            account = self._account(options["account"])
            closes = [
                partial(
                    batch_close,
                    account=account,
                    trigger=BatchClose.Trigger.COMMAND,
                    store_no=store,
                    terminal_sn_list=options["terminal"],
                )
                for store in options["store"] or [""]
            ]
        batches = []
        with progress(
            command=self, total=len(closes), unit="batch", description="Closing batches", logger=logger
        ) as tracker:
            for close in closes:
                batch = close()
                tracker.item(self._describe(batch), batch_close_id=batch.pk, store_no=batch.store_no)
                tracker.advance()
                batches.append(batch)
        failed = [batch for batch in batches if batch.status != "succeeded"]
        self.stdout.write(f"Batch closes: {len(batches) - len(failed)} succeeded, {len(failed)} did not.")
        if failed:
            raise CommandError(
                "; ".join(self._describe(batch).rstrip(".") for batch in failed)
                + ". A close that did not succeed is retried automatically while attempts remain."
            )

    @staticmethod
    def _account(code: str | None) -> MerchantAccount:
        try:
            if not code:
                return merchant_account_sync_default()
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        lookup = {"pk": int(code)} if code.isdigit() else {"code": code}
        account = MerchantAccount.objects.filter(**lookup).first()
        if account is None:
            raise CommandError(f"No merchant account with id or code '{code}'.")
        return account

    @staticmethod
    def _describe(batch: BatchClose) -> str:
        store = batch.store_no or "all stores"
        if batch.status == "succeeded":
            return (
                f"Batch close {batch.pk} ({store}): succeeded, {batch.count} transactions, total {batch.total_amount}."
            )
        return (
            f"Batch close {batch.pk} ({store}): {batch.status} after {batch.attempts} attempt(s): "
            f"{batch.gateway_code} {batch.gateway_message}".rstrip()
        )
