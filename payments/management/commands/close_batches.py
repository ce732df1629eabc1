"""``manage.py close_batches``: close terminal batches on demand, or run the due schedules once."""

from django.core.management.base import BaseCommand, CommandError

from codepay_service.errors import ServiceError
from payments.models import BatchClose, MerchantAccount
from payments.services.accounts import merchant_account_sync_default
from payments.services.batches import batch_close, batch_close_attempt, batch_schedules_open_due


class Command(BaseCommand):
    help = (
        "With --now: close the open batch now (each --store, or the whole merchant account), through the same "
        "service as the API. Without it: record and send the closes of the schedules that are due, like the beat task."
    )

    def add_arguments(self, parser):
        parser.add_argument("--now", action="store_true", help="Close now instead of running the due schedules.")
        parser.add_argument("--store", action="append", default=[], help="A store_no to close (repeatable).")
        parser.add_argument("--terminal", action="append", default=[], help="Only these terminal serial numbers (repeatable).")
        parser.add_argument("--account", help="Merchant account id or code (default: the account from CODEPAY_* settings).")

    def handle(self, *args, **options):
        if not options["now"]:
            if options["store"] or options["terminal"]:
                raise CommandError("--store and --terminal go with --now.")
            batches = [batch_close_attempt(batch=batch) for batch in batch_schedules_open_due()]
            if not batches:
                self.stdout.write("No schedule is due.")
        else:
            account = self._account(options["account"])
            batches = [
                batch_close(account=account, trigger=BatchClose.Trigger.COMMAND, store_no=store, terminal_sn_list=options["terminal"])
                for store in options["store"] or [""]
            ]
        for batch in batches:
            self.stdout.write(self._describe(batch))
        if any(batch.status != "succeeded" for batch in batches):
            raise CommandError("At least one batch close did not succeed; it is retried automatically while attempts remain.")

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
            return f"Batch close {batch.pk} ({store}): succeeded, {batch.count} transactions, total {batch.total_amount}."
        return (
            f"Batch close {batch.pk} ({store}): {batch.status} after {batch.attempts} attempt(s): "
            f"{batch.gateway_code} {batch.gateway_message}".rstrip()
        )
