"""The default won stage is called "Won", not "Deal" (a deal in the stage "Deal" read oddly).

A stage is renamed only where that is safe: it is still called exactly "Deal", it is the won
kind, and no other stage of its pipeline is called "Won" in any case (stage names are unique
per pipeline, ignoring case). A stage someone renamed keeps its name. Pipeline rules that name
"Deal" keep matching it: a rule matches a default stage by any of its names
(``crm.services.accounts.workspaces.same_default_stage``). Workspaces keep their region, currency and
other stage names.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops

RENAME = (
    "UPDATE stage SET name = '{new}' WHERE name = '{old}' AND kind = 'won' "
    "AND NOT EXISTS (SELECT 1 FROM stage other WHERE other.pipeline_id = stage.pipeline_id "
    "AND other.id <> stage.id AND lower(other.name) = lower('{new}'))"
)


async def _up(apps, schema_editor) -> None:
    await schema_editor.client.execute_script(RENAME.format(old="Deal", new="Won"))


async def _down(apps, schema_editor) -> None:
    await schema_editor.client.execute_script(RENAME.format(old="Won", new="Deal"))


class Migration(migrations.Migration):
    dependencies = [("models", "0012_notification_bot_intent")]

    operations = [ops.RunPython(_up, _down)]
