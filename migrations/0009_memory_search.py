"""Keyword search over memory chunks: FTS5 on SQLite, a full-text GIN index on PostgreSQL.

The dense index (FAISS) misses exact names, numbers and most Russian paraphrases (the embedding
model is English-trained), so retrieval fuses it with this keyword search.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops

SQLITE_CREATE = """
CREATE VIRTUAL TABLE IF NOT EXISTS memory_chunk_fts USING fts5(
    text, content='memory_chunk', content_rowid='id', tokenize='unicode61 remove_diacritics 2'
);
CREATE TRIGGER IF NOT EXISTS memory_chunk_fts_insert AFTER INSERT ON memory_chunk BEGIN
    INSERT INTO memory_chunk_fts(rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER IF NOT EXISTS memory_chunk_fts_delete AFTER DELETE ON memory_chunk BEGIN
    INSERT INTO memory_chunk_fts(memory_chunk_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
CREATE TRIGGER IF NOT EXISTS memory_chunk_fts_update AFTER UPDATE OF text ON memory_chunk BEGIN
    INSERT INTO memory_chunk_fts(memory_chunk_fts, rowid, text) VALUES ('delete', old.id, old.text);
    INSERT INTO memory_chunk_fts(rowid, text) VALUES (new.id, new.text);
END;
"""

SQLITE_DROP = """
DROP TRIGGER IF EXISTS memory_chunk_fts_insert;
DROP TRIGGER IF EXISTS memory_chunk_fts_delete;
DROP TRIGGER IF EXISTS memory_chunk_fts_update;
DROP TABLE IF EXISTS memory_chunk_fts;
"""

# 'simple' (no stemming, any language): the query side truncates words into prefixes instead.
POSTGRES_CREATE = (
    "CREATE INDEX IF NOT EXISTS memory_chunk_fulltext ON memory_chunk "
    "USING gin (tenant_id, to_tsvector('simple', text))"
)


async def _create(apps, schema_editor) -> None:
    client = schema_editor.client
    if client.capabilities.dialect == "postgres":
        await client.execute_script("CREATE EXTENSION IF NOT EXISTS btree_gin")
        await client.execute_script(POSTGRES_CREATE)
    else:
        # One statement at a time: the trigger bodies contain semicolons.
        for statement in _statements(SQLITE_CREATE):
            await client.execute_script(statement)


async def _drop(apps, schema_editor) -> None:
    client = schema_editor.client
    if client.capabilities.dialect == "postgres":
        await client.execute_script("DROP INDEX IF EXISTS memory_chunk_fulltext")
    else:
        for statement in _statements(SQLITE_DROP):
            await client.execute_script(statement)


def _statements(script: str) -> list[str]:
    """Split on blank-line-free statement ends: ``END;`` closes a trigger, ``;`` the rest."""
    out, current = [], []
    for line in script.strip().splitlines():
        current.append(line)
        stripped = line.strip()
        inside_trigger = any(s.strip().startswith("CREATE TRIGGER") for s in current)
        if (inside_trigger and stripped == "END;") or (not inside_trigger and stripped.endswith(";")):
            out.append("\n".join(current))
            current = []
    if current:
        out.append("\n".join(current))
    return out


class Migration(migrations.Migration):
    dependencies = [("models", "0008_ai")]

    operations = [ops.RunPython(_create, _drop)]
