from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("generation", "0009_render_lease")]

    operations = [
        migrations.AddField(
            model_name="collection",
            name="prepared_config_digest",
            field=models.CharField(
                blank=True,
                help_text="digest of the freeze transaction prepared to sign",
                max_length=66,
            ),
        ),
        migrations.AddField(
            model_name="collection",
            name="prepared_contract_uri",
            field=models.CharField(
                blank=True, help_text="contract metadata of the prepared freeze", max_length=200
            ),
        ),
    ]
