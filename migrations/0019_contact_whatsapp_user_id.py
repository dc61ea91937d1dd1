from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields
from tortoise.indexes import Index
from tortoise.migrations.constraints import UniqueConstraint


class Migration(migrations.Migration):
    dependencies = [("models", "0016_addressed_invites")]

    initial = False

    operations = [
        ops.AddField(
            model_name="Contact",
            name="whatsapp_parent_user_id",
            field=fields.CharField(null=True, max_length=64),
        ),
        ops.AddField(
            model_name="Contact",
            name="whatsapp_user_id",
            field=fields.CharField(null=True, max_length=64),
        ),
        ops.AddField(
            model_name="Contact",
            name="whatsapp_username",
            field=fields.CharField(null=True, description="no @", max_length=64),
        ),
        ops.AddIndex(
            model_name="Contact",
            index=Index(fields=["tenant_id", "whatsapp_parent_user_id"]),
        ),
        ops.AddConstraint(
            model_name="Contact",
            constraint=UniqueConstraint(fields=("tenant", "whatsapp_user_id"), name=None),
        ),
    ]
