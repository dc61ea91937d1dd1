from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0005_operator_bot')]

    initial = False

    operations = [
        ops.AddField(
            model_name='User',
            name='digest_sent_on',
            field=fields.DateField(null=True),
        ),
        ops.AddField(
            model_name='User',
            name='timezone',
            field=fields.CharField(null=True, max_length=64),
        ),
    ]
