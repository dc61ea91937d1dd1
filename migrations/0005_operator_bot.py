from tortoise import migrations
from tortoise.migrations import operations as ops
from crm.models.accounts import Role
from tortoise.fields.base import OnDelete
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0004_inbox')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Invite',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('tenant', fields.ForeignKeyField('models.Tenant', source_field='tenant_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('token_hash', fields.CharField(unique=True, max_length=64)),
                ('role', fields.CharEnumField(description='OWNER: owner\nADMIN: admin\nBIDI: bidi\nVIEWER: viewer', enum_type=Role, max_length=16)),
                ('created_by', fields.ForeignKeyField('models.User', source_field='created_by_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.SET_NULL)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('used_by', fields.ForeignKeyField('models.User', source_field='used_by_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.SET_NULL)),
                ('used_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'invite', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A single-use invitation to join a workspace with a role, stored as a hash of its token.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='OperatorNotification',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('tenant', fields.ForeignKeyField('models.Tenant', source_field='tenant_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('chat_id', fields.BigIntField()),
                ('telegram_message_id', fields.BigIntField()),
                ('conversation', fields.ForeignKeyField('models.Conversation', source_field='conversation_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('lead_message', fields.ForeignKeyField('models.Message', source_field='lead_message_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'operator_notification', 'app': 'models', 'unique_together': (('chat_id', 'telegram_message_id'), ('user', 'lead_message')), 'pk_attr': 'id', 'table_description': 'A message the operator bot sent about a lead message, found again by a Telegram reply.'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='User',
            name='current_tenant',
            field=fields.ForeignKeyField('models.Tenant', source_field='current_tenant_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.SET_NULL),
        ),
    ]
