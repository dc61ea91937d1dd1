"""An invite may be addressed to one existing user (POST /members of someone with an account)."""

from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("models", "0014_sign_in_link")]

    initial = False

    operations = [
        ops.AddField(
            model_name="Invite",
            name="invitee",
            field=fields.ForeignKeyField(
                "models.User",
                source_field="invitee_id",
                null=True,
                db_constraint=True,
                to_field="id",
                related_name=False,
                on_delete=OnDelete.CASCADE,
            ),
        ),
    ]
