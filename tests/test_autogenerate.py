"""`alembic revision --autogenerate` writes a revision on the safe operations only: shown
with a throwaway model change, in a temporary copy of the migrations (never the real
versions folder)."""

from __future__ import annotations

import ast
import asyncio
import re
import shutil
import uuid
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.engine import URL

from app.db.migrate.steps import MIGRATIONS, alembic_config
from app.db.settings import Environment
from app.models import Base
from scripts.lint_migrations import revision_sql, squawk, unsafe_calls
from tests.conftest import ScratchFactory
from tests.helpers.guide import fetch


def changed_models() -> sa.MetaData:
    """The models plus a new table and new columns, in a copy."""
    copy = sa.MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.sorted_tables:
        table.to_metadata(copy)
    sa.Table(
        "collection_sources",
        copy,
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, index=True),
        sa.Column("analyst_id", UUID(as_uuid=True), sa.ForeignKey("analysts.id")),
        sa.Column("retired_at", sa.DateTime(timezone=True)),
        sa.Index(
            "uq_collection_sources_live_name",
            "name",
            unique=True,
            postgresql_where=sa.text("retired_at IS NULL"),
        ),
    )
    logs = copy.tables["data_collection_logs"]
    logs.append_column(sa.Column("source_note", sa.Text))
    logs.append_column(sa.Column("batch_no", sa.BigInteger, nullable=False))
    logs.append_column(
        sa.Column("source_id", UUID(as_uuid=True), sa.ForeignKey("collection_sources.id"))
    )
    sa.Index("idx_data_collection_logs_source_note", logs.c.source_note)
    return copy


def throwaway_config(folder: Path, url: URL) -> Config:
    shutil.copytree(MIGRATIONS, folder, ignore=shutil.ignore_patterns("__pycache__"))
    config = alembic_config()
    config.set_main_option("script_location", str(folder))
    config.attributes.update(url=url, environment=Environment.TEST)
    return config


async def test_autogenerate_writes_only_safe_operations_that_work_both_ways(
    scratch_db: ScratchFactory, tmp_path: Path
) -> None:
    url = await scratch_db()
    config = throwaway_config(tmp_path / "migrations", url)
    await asyncio.to_thread(command.upgrade, config, "head")
    config.attributes["target_metadata"] = changed_models()
    rev = uuid.uuid4().hex[:12]
    await asyncio.to_thread(command.revision, config, "add sources", True, rev_id=rev)

    [written] = (tmp_path / "migrations" / "versions").glob(f"*{rev}*.py")
    source = written.read_text()
    assert "op." not in source, source
    assert unsafe_calls(source, written.name) == []
    # The new table's DDL reads as DDL: one string, one line, per column.
    assert re.search(r"[\"']    retired_at TIMESTAMP WITH TIME ZONE,\\n[\"']\n", source), source
    source = ast.unparse(ast.parse(source))  # as written, less the formatter's line breaks
    for call in (
        "safe.create_table('collection_sources'",
        "indexes=[('idx_collection_sources_name', 'name')]",
        "safe.create_index('uq_collection_sources_live_name', 'collection_sources', 'name', "
        "unique=True, where='retired_at IS NULL')",
        "safe.add_column('data_collection_logs', 'source_note TEXT')",
        "safe.add_column('data_collection_logs', 'batch_no BIGINT')",
        "safe.set_not_null('data_collection_logs', 'batch_no')",
        "safe.add_foreign_key('data_collection_logs_source_id_fkey', 'data_collection_logs',",
        "safe.create_index('idx_data_collection_logs_source_note', 'data_collection_logs'",
        "safe.drop_column('data_collection_logs', 'source_note')",
        "safe.drop_table('collection_sources')",
        "safe.drop_constraint('data_collection_logs_source_id_fkey', 'data_collection_logs')",
    ):
        assert call in source, f"{call} not in:\n{source}"

    findings = squawk(revision_sql(config))
    assert findings == [], "\n".join(map(str, findings))

    await asyncio.to_thread(command.upgrade, config, "head")
    await asyncio.to_thread(command.upgrade, config, "head")  # again: nothing to do
    columns = await fetch(
        url,
        "SELECT column_name, is_nullable FROM information_schema.columns"
        " WHERE table_name = 'data_collection_logs' AND column_name = 'batch_no'",
    )
    assert columns == [("batch_no", "NO")]
    await asyncio.to_thread(command.downgrade, config, "-1")
    assert await fetch(url, "SELECT to_regclass('collection_sources')") == [(None,)]
    await asyncio.to_thread(command.upgrade, config, "head")
    assert await fetch(url, "SELECT to_regclass('collection_sources') IS NOT NULL") == [(True,)]
