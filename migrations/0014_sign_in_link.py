"""Single-use sign-in links for the sandbox page: the operator's welcome no longer holds a key."""

from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("models", "0013_won_stage_name")]

    initial = False

    operations = [
        ops.CreateModel(
            name="SignInLink",
            fields=[
                (
                    "id",
                    fields.IntField(generated=True, primary_key=True, unique=True, db_index=True),
                ),
                (
                    "tenant",
                    fields.ForeignKeyField(
                        "models.Tenant",
                        source_field="tenant_id",
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "user",
                    fields.ForeignKeyField(
                        "models.User",
                        source_field="user_id",
                        db_constraint=True,
                        to_field="id",
                        related_name=False,
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("token_hash", fields.CharField(unique=True, max_length=64)),
                ("expires_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
                (
                    "used_at",
                    fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "sign_in_link",
                "app": "models",
                "pk_attr": "id",
                "table_description": "A single-use, short-lived link that signs a member in to "
                "a web page, stored as a hash.",
            },
            bases=["Model"],
        ),
    ]
