from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields


class Migration(migrations.Migration):
    dependencies = [("models", "0019_contact_whatsapp_user_id")]

    initial = False

    operations = [
        ops.AddField(
            model_name="MemoryChunk",
            name="multilingual_vector",
            field=fields.BinaryField(null=True),
        ),
    ]
