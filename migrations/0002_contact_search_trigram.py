"""Search indexes: tag lookups everywhere, trigram substring search on PostgreSQL only."""

from tortoise import migrations
from tortoise.migrations import operations as ops


async def _create_trigram_index(apps, schema_editor) -> None:
    # Both dialects: the tag filter walks contact_tag by tag.
    await schema_editor.client.execute_script(
        "CREATE INDEX IF NOT EXISTS contact_tag_by_tag ON contact_tag (tag_id, contact_id)"
    )
    if schema_editor.client.capabilities.dialect != "postgres":
        return
    # pg_trgm and btree_gin are trusted extensions (PostgreSQL >= 13): a database owner may
    # create them. btree_gin lets one GIN index cover (tenant_id, search_text).
    await schema_editor.client.execute_script(
        "CREATE EXTENSION IF NOT EXISTS pg_trgm;"
        "CREATE EXTENSION IF NOT EXISTS btree_gin;"
        "CREATE INDEX IF NOT EXISTS contact_search_trgm "
        "ON contact USING gin (tenant_id, search_text gin_trgm_ops);"
    )


async def _drop_trigram_index(apps, schema_editor) -> None:
    await schema_editor.client.execute_script("DROP INDEX IF EXISTS contact_tag_by_tag")
    if schema_editor.client.capabilities.dialect != "postgres":
        return
    await schema_editor.client.execute_script("DROP INDEX IF EXISTS contact_search_trgm;")


class Migration(migrations.Migration):
    dependencies = [("models", "0001_initial")]

    operations = [ops.RunPython(_create_trigram_index, _drop_trigram_index)]
