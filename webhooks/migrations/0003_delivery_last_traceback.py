from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("webhooks", "0002_delivery_confirmed_trans_status"),
    ]

    operations = [
        migrations.AddField(
            model_name="notificationdelivery",
            name="last_traceback",
            field=models.TextField(
                blank=True,
                help_text="The formatted traceback of the failure behind last_error, its end when long; empty: none.",
            ),
        ),
    ]
