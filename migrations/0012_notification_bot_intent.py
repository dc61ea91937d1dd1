"""Operator notifications: keyed by the bot too, and recorded before the Telegram call.

- ``bot_id``: Telegram message ids count per bot and chat and start again for a new bot token
  or a Bot API that forgot its chats, so (chat, message id) alone pointed a reply at an older
  lead. Unique on (bot, chat, message id) now; rows from before carry no bot.
- ``telegram_message_id`` may be null: the intent is stored before the send (``state``
  pending), so a redelivered event never notifies twice; ``error`` keeps why Telegram refused.

The operations on the model state are tortoise's; the table is changed by hand: on SQLite
tortoise rebuilds a table for a nullable column without its unique constraints, and cannot
drop an inline one.
"""

from tortoise import fields, migrations
from tortoise.indexes import Index
from tortoise.migrations import operations as ops
from tortoise.migrations.constraints import UniqueConstraint

from crm.models.inbox import NotificationState

TABLE = "operator_notification"
OLD_UNIQUE = "uid_operator_no_chat_id_201198"
NEW_UNIQUE = "uid_operator_no_bot_id_15f89f"
LEAD_UNIQUE = "uid_operator_no_user_id_49e7e5"
LOOKUP_INDEX = "idx_operator_no_chat_id_201198"

SQLITE_UP = (
    f'DROP TABLE IF EXISTS "new__{TABLE}"',  # left by an earlier attempt that failed
    f"""CREATE TABLE "new__{TABLE}" (
    "id" INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    "bot_id" BIGINT,
    "chat_id" BIGINT NOT NULL,
    "telegram_message_id" BIGINT,
    "state" VARCHAR(16) NOT NULL DEFAULT 'sent',
    "error" VARCHAR(500),
    "created_at" TIMESTAMP NOT NULL,
    "conversation_id" INT NOT NULL REFERENCES "conversation" ("id") ON DELETE CASCADE,
    "lead_message_id" BIGINT REFERENCES "message" ("id") ON DELETE CASCADE,
    "tenant_id" INT NOT NULL REFERENCES "tenant" ("id") ON DELETE CASCADE,
    "user_id" INT NOT NULL REFERENCES "app_user" ("id") ON DELETE CASCADE,
    CONSTRAINT "{NEW_UNIQUE}" UNIQUE ("bot_id", "chat_id", "telegram_message_id"),
    CONSTRAINT "{LEAD_UNIQUE}" UNIQUE ("user_id", "lead_message_id")
)""",
    f"""INSERT INTO "new__{TABLE}" ("id", "chat_id", "telegram_message_id", "created_at",
    "conversation_id", "lead_message_id", "tenant_id", "user_id")
SELECT "id", "chat_id", "telegram_message_id", "created_at", "conversation_id",
    "lead_message_id", "tenant_id", "user_id" FROM "{TABLE}\"""",
    f'DROP TABLE "{TABLE}"',
    f'ALTER TABLE "new__{TABLE}" RENAME TO "{TABLE}"',
    f'CREATE INDEX "{LOOKUP_INDEX}" ON "{TABLE}" ("chat_id", "telegram_message_id")',
)
POSTGRES_UP = (
    f'ALTER TABLE "{TABLE}" DROP CONSTRAINT IF EXISTS "{OLD_UNIQUE}"',
    f'ALTER TABLE "{TABLE}" ALTER COLUMN "telegram_message_id" DROP NOT NULL',
    f'ALTER TABLE "{TABLE}" ADD COLUMN "bot_id" BIGINT',
    f'ALTER TABLE "{TABLE}" ADD COLUMN "state" VARCHAR(16) NOT NULL DEFAULT \'sent\'',
    f'ALTER TABLE "{TABLE}" ADD COLUMN "error" VARCHAR(500)',
    f'ALTER TABLE "{TABLE}" ADD CONSTRAINT "{NEW_UNIQUE}" '
    '    UNIQUE ("bot_id", "chat_id", "telegram_message_id")',
    f'CREATE INDEX "{LOOKUP_INDEX}" ON "{TABLE}" ("chat_id", "telegram_message_id")',
)


async def _up(apps, schema_editor) -> None:
    client = schema_editor.client
    statements = POSTGRES_UP if client.capabilities.dialect == "postgres" else SQLITE_UP
    for statement in statements:
        await client.execute_script(statement)


class _StateOnly(ops.TortoiseOperation):
    """Tortoise's operations for the model state only: ``_up`` changes the table."""

    def __init__(self, *operations: ops.TortoiseOperation) -> None:
        self.operations = operations

    def state_forward(self, app_label, state) -> None:
        for operation in self.operations:
            operation.state_forward(app_label, state)


class Migration(migrations.Migration):
    dependencies = [("models", "0011_memory_tsvector")]

    initial = False

    operations = [
        ops.RunPython(_up, atomic=True),
        _StateOnly(
            ops.RemoveConstraint(
                model_name="OperatorNotification",
                name=None,
                fields=["chat_id", "telegram_message_id"],
            ),
            ops.AlterField(
                model_name="OperatorNotification",
                name="telegram_message_id",
                field=fields.BigIntField(null=True),
            ),
            ops.AddField(
                model_name="OperatorNotification",
                name="bot_id",
                field=fields.BigIntField(null=True),
            ),
            ops.AddField(
                model_name="OperatorNotification",
                name="error",
                field=fields.CharField(null=True, max_length=500),
            ),
            ops.AddField(
                model_name="OperatorNotification",
                name="state",
                field=fields.CharEnumField(
                    default=NotificationState.SENT,
                    description="PENDING: pending\nSENT: sent\nFAILED: failed",
                    enum_type=NotificationState,
                    max_length=16,
                ),
            ),
            ops.AddIndex(
                model_name="OperatorNotification",
                index=Index(fields=["chat_id", "telegram_message_id"]),
            ),
            ops.AddConstraint(
                model_name="OperatorNotification",
                constraint=UniqueConstraint(
                    fields=("bot_id", "chat_id", "telegram_message_id"), name=None
                ),
            ),
        ),
    ]
