from django.core.management.base import BaseCommand, CommandError

from codepay_service.errors import Misconfigured
from payments.models import MerchantAccount
from payments.services.accounts import api_key_create, merchant_account_sync_default


class Command(BaseCommand):
    help = "Create an API key for a store system. Only its hash is stored; the key is printed once, on the last line."

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True, help="Who uses the key, e.g. 'pos-store-12'.")
        parser.add_argument(
            "--account", help="Merchant account id or code (default: the account from CODEPAY_* settings)."
        )
        parser.add_argument("--store", default="", help="Bind the key to one store_no; it then sees only that store.")

    def handle(self, *args, name, account, store, **options):
        try:
            if account:
                lookup = {"pk": int(account)} if account.isdigit() else {"code": account}
                merchant_account = MerchantAccount.objects.filter(**lookup).first()
                if merchant_account is None:
                    raise CommandError(f"No merchant account with id or code '{account}'.")
            else:
                merchant_account = merchant_account_sync_default()
        except Misconfigured as exc:
            raise CommandError(exc.detail) from None
        api_key, key = api_key_create(name=name, account=merchant_account, store_no=store)
        scope = f"store {store}" if store else "every store"
        self.stdout.write(f"API key '{name}' ({api_key.prefix}) for {merchant_account} on {scope}:")
        self.stdout.write(key)
