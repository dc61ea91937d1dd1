from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from crm.messaging import ChannelKind, DeliveryStatus, MessageKind
from crm.models.inbox import AuthorType, ConversationStatus, Direction
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0003_contact_search_statistics')]

    initial = False

    operations = [
        ops.CreateModel(
            name='ChannelConnection',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('tenant', fields.ForeignKeyField('models.Tenant', source_field='tenant_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('kind', fields.CharEnumField(description='WHATSAPP: whatsapp\nTELEGRAM: telegram', enum_type=ChannelKind, max_length=16)),
                ('display_name', fields.CharField(max_length=200)),
                ('external_key', fields.CharField(max_length=64)),
                ('sandbox', fields.BooleanField(default=False)),
                ('settings', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('credentials_encrypted', fields.TextField(unique=False)),
                ('rate_per_second', fields.IntField(default=80)),
                ('active', fields.BooleanField(default=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'channel_connection', 'app': 'models', 'unique_together': (('kind', 'external_key'),), 'pk_attr': 'id', 'table_description': 'One WhatsApp number or Telegram bot of a tenant, with encrypted credentials.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='BusinessLink',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('tenant', fields.ForeignKeyField('models.Tenant', source_field='tenant_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('connection', fields.ForeignKeyField('models.ChannelConnection', source_field='connection_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('business_connection_id', fields.CharField(max_length=128)),
                ('rep_telegram_id', fields.BigIntField()),
                ('rep_name', fields.CharField(default='', max_length=200)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.SET_NULL)),
                ('enabled', fields.BooleanField(default=True)),
                ('can_reply', fields.BooleanField(default=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'business_link', 'app': 'models', 'unique_together': (('connection', 'business_connection_id'),), 'pk_attr': 'id', 'table_description': 'Telegram Business: a rep connected the business bot to their own Telegram account.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Conversation',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('tenant', fields.ForeignKeyField('models.Tenant', source_field='tenant_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('contact', fields.ForeignKeyField('models.Contact', source_field='contact_id', db_constraint=True, to_field='id', related_name='conversations', on_delete=OnDelete.CASCADE)),
                ('connection', fields.ForeignKeyField('models.ChannelConnection', source_field='connection_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('channel', fields.CharEnumField(description='WHATSAPP: whatsapp\nTELEGRAM: telegram', enum_type=ChannelKind, max_length=16)),
                ('peer_id', fields.CharField(max_length=64)),
                ('business_connection_id', fields.CharField(default='', max_length=128)),
                ('assignee', fields.ForeignKeyField('models.User', source_field='assignee_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.SET_NULL)),
                ('status', fields.CharEnumField(default=ConversationStatus.OPEN, description='OPEN: open\nSNOOZED: snoozed\nCLOSED: closed', enum_type=ConversationStatus, max_length=16)),
                ('snoozed_until', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('unread_count', fields.IntField(default=0)),
                ('last_inbound_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('last_message_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('last_message_preview', fields.CharField(default='', max_length=200)),
                ('ai_mode', fields.CharField(default='off', max_length=16)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'conversation', 'app': 'models', 'unique_together': (('connection', 'contact', 'business_connection_id'),), 'indexes': [Index(fields=['tenant_id', 'last_message_at', 'id']), Index(fields=['tenant_id', 'assignee_id', 'last_message_at'])], 'pk_attr': 'id', 'table_description': 'A contact talking to the business over one connection.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Message',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('tenant', fields.ForeignKeyField('models.Tenant', source_field='tenant_id', db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.CASCADE)),
                ('conversation', fields.ForeignKeyField('models.Conversation', source_field='conversation_id', db_constraint=True, to_field='id', related_name='messages', on_delete=OnDelete.CASCADE)),
                ('connection_id', fields.IntField()),
                ('direction', fields.CharEnumField(description='IN: in\nOUT: out\nNOTE: note', enum_type=Direction, max_length=8)),
                ('kind', fields.CharEnumField(default=MessageKind.TEXT, description='TEXT: text\nIMAGE: image\nDOCUMENT: document\nAUDIO: audio\nVOICE: voice\nVIDEO: video\nSTICKER: sticker\nLOCATION: location\nCONTACTS: contacts\nBUTTON: button\nREACTION: reaction\nTEMPLATE: template\nINTERACTIVE: interactive\nUNSUPPORTED: unsupported', enum_type=MessageKind, max_length=16)),
                ('text', fields.TextField(default='', unique=False)),
                ('media', fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('payload', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('external_id', fields.CharField(null=True, max_length=128)),
                ('status', fields.CharEnumField(default=DeliveryStatus.QUEUED, description='QUEUED: queued\nSENT: sent\nDELIVERED: delivered\nREAD: read\nFAILED: failed', enum_type=DeliveryStatus, max_length=16)),
                ('error_code', fields.IntField(null=True)),
                ('error_title', fields.CharField(null=True, max_length=500)),
                ('author_type', fields.CharEnumField(description='CONTACT: contact\nUSER: user\nAGENT: agent\nCAMPAIGN: campaign\nSYSTEM: system', enum_type=AuthorType, max_length=16)),
                ('author_user', fields.ForeignKeyField('models.User', source_field='author_user_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.SET_NULL)),
                ('reply_to', fields.ForeignKeyField('models.Message', source_field='reply_to_id', null=True, db_constraint=True, to_field='id', related_name=False, on_delete=OnDelete.SET_NULL)),
                ('marketing', fields.BooleanField(default=False)),
                ('idempotency_key', fields.CharField(null=True, max_length=128)),
                ('attempts', fields.IntField(default=0)),
                ('sending_since', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('edited', fields.BooleanField(default=False)),
                ('deleted', fields.BooleanField(default=False)),
                ('provider_at', fields.DatetimeField(null=True, description='when the provider says it happened', auto_now=False, auto_now_add=False)),
                ('status_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'message', 'app': 'models', 'unique_together': (('connection_id', 'external_id'), ('tenant', 'idempotency_key')), 'indexes': [Index(fields=['conversation_id', 'id']), Index(fields=['tenant_id', 'id'])], 'pk_attr': 'id', 'table_description': 'One message of a conversation, or a private note of the team.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='PendingStatus',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('connection_id', fields.IntField()),
                ('external_id', fields.CharField(max_length=128)),
                ('status', fields.CharEnumField(description='QUEUED: queued\nSENT: sent\nDELIVERED: delivered\nREAD: read\nFAILED: failed', enum_type=DeliveryStatus, max_length=16)),
                ('error_code', fields.IntField(null=True)),
                ('error_title', fields.CharField(null=True, max_length=500)),
                ('at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'pending_status', 'app': 'models', 'unique_together': (('connection_id', 'external_id', 'status'),), 'pk_attr': 'id', 'table_description': 'A delivery receipt that arrived before the send call returned the provider id.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ProcessedUpdate',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('connection_id', fields.IntField()),
                ('update_key', fields.CharField(max_length=128)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'processed_update', 'app': 'models', 'unique_together': (('connection_id', 'update_key'),), 'pk_attr': 'id', 'table_description': 'A provider update already handled (Telegram update_id), for webhook dedupe.'},
            bases=['Model'],
        ),
    ]
