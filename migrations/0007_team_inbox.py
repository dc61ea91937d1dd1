from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from crm.models.inbox import TeamPostKind, TeamPostStatus
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0006_operator_profile')]

    initial = False

    operations = [
        ops.CreateModel(
            name='TeamInbox',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('tenant', fields.OneToOneField('models.Tenant', source_field='tenant_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('chat_id', fields.BigIntField(unique=True)),
                ('title', fields.CharField(default='', max_length=255)),
                ('language', fields.CharField(default='en', max_length=8)),
                ('linked_by', fields.ForeignKeyField('models.User', source_field='linked_by_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.SET_NULL)),
                ('linked_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('lagging', fields.BooleanField(default=False)),
                ('call_times', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('warned', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('lease_owner', fields.CharField(null=True, max_length=64)),
                ('lease_until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'team_inbox', 'app': 'models', 'pk_attr': 'id', 'table_description': 'A forum supergroup linked to a workspace as its team inbox, one group per workspace.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='TeamPost',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('tenant', fields.ForeignKeyField('models.Tenant', source_field='tenant_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('chat_id', fields.BigIntField()),
                ('kind', fields.CharEnumField(description='MESSAGE: message\nNAME: name\nSTATE: state\nREPLY: reply', enum_type=TeamPostKind, max_length=16)),
                ('conversation', fields.ForeignKeyField('models.Conversation', source_field='conversation_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('lead_message', fields.ForeignKeyField('models.Message', source_field='lead_message_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('dedupe_key', fields.CharField(null=True, max_length=64)),
                ('payload', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('status', fields.CharEnumField(default=TeamPostStatus.PENDING, description='PENDING: pending\nSENDING: sending\nSENT: sent\nSKIPPED: skipped\nFAILED: failed\nCANCELLED: cancelled', enum_type=TeamPostStatus, max_length=16)),
                ('attempts', fields.IntField(default=0)),
                ('error', fields.CharField(null=True, max_length=500)),
                ('telegram_message_id', fields.BigIntField(null=True)),
                ('claimed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('done_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'team_post', 'app': 'models', 'unique_together': (('chat_id', 'lead_message'), ('chat_id', 'dedupe_key')), 'indexes': [Index(fields=['status', 'chat_id', 'id'])], 'pk_attr': 'id', 'table_description': 'A post waiting for its turn in a team inbox group: the durable per-group queue.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='TeamTopic',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('tenant', fields.ForeignKeyField('models.Tenant', source_field='tenant_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('conversation', fields.ForeignKeyField('models.Conversation', source_field='conversation_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('chat_id', fields.BigIntField()),
                ('message_thread_id', fields.BigIntField()),
                ('name', fields.CharField(max_length=128)),
                ('closed', fields.BooleanField(default=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'team_topic', 'app': 'models', 'unique_together': (('conversation', 'chat_id'), ('chat_id', 'message_thread_id')), 'pk_attr': 'id', 'table_description': 'The forum topic of one conversation in a team inbox group, found again by its thread id.'},
            bases=['Model'],
        ),
    ]
