"""PostgreSQL keyword search reads a stored tsvector instead of parsing every matching text.

``ts_rank(to_tsvector(text), ...)`` parsed each matching chunk again on every query: a draft's
keyword search grew with the tenant's history. A generated column holds the vector once, and
the GIN index moves onto it. SQLite's FTS5 table (migration 0009) needs no change.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops

POSTGRES_UP = (
    "ALTER TABLE memory_chunk ADD COLUMN IF NOT EXISTS text_tsv tsvector "
    "GENERATED ALWAYS AS (to_tsvector('simple', text)) STORED",
    "DROP INDEX IF EXISTS memory_chunk_fulltext",
    "CREATE INDEX IF NOT EXISTS memory_chunk_tsv ON memory_chunk USING gin (tenant_id, text_tsv)",
)
POSTGRES_DOWN = (
    "DROP INDEX IF EXISTS memory_chunk_tsv",
    "ALTER TABLE memory_chunk DROP COLUMN IF EXISTS text_tsv",
    "CREATE INDEX IF NOT EXISTS memory_chunk_fulltext ON memory_chunk "
    "USING gin (tenant_id, to_tsvector('simple', text))",
)


async def _up(apps, schema_editor) -> None:
    client = schema_editor.client
    if client.capabilities.dialect == "postgres":
        for statement in POSTGRES_UP:
            await client.execute_script(statement)


async def _down(apps, schema_editor) -> None:
    client = schema_editor.client
    if client.capabilities.dialect == "postgres":
        for statement in POSTGRES_DOWN:
            await client.execute_script(statement)


class Migration(migrations.Migration):
    dependencies = [("models", "0010_agents")]

    operations = [ops.RunPython(_up, _down)]
