"""app.db.migrate.safe on a real server: each operation does what it says, twice in a
row is a no-op, and what cannot be safe is refused unless accepted with a reason."""

from __future__ import annotations

import io
import logging

import pytest
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import URL

from app.db.engine import create_engine
from app.db.migrate import safe
from app.db.migrate.safe import Operation, UnsafeOperationError
from tests.conftest import ScratchFactory
from tests.helpers.guide import fetch, run_script


async def apply(url: URL, *operations: Operation) -> None:
    """Run operations as a revision would (an Alembic migration context on the database)."""

    engine = create_engine(url, null_pool=True)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(safe.run_on, *operations)
    finally:
        await engine.dispose()


def offline(*operations: Operation) -> str:
    buffer = io.StringIO()
    context = MigrationContext.configure(
        dialect_name="postgresql", opts={"as_sql": True, "output_buffer": buffer}
    )
    with Operations.context(context):
        safe.run(*operations)
    return buffer.getvalue()


@pytest.fixture
async def items(scratch_db: ScratchFactory) -> URL:
    """A table with rows, standing for a big existing one."""
    url = await scratch_db()
    await run_script(
        url,
        "CREATE TABLE owners (id INT PRIMARY KEY);"
        "INSERT INTO owners SELECT generate_series(1, 3);"
        "CREATE TABLE items (id INT PRIMARY KEY, owner_id INT, code TEXT);"
        "INSERT INTO items SELECT g, 1 + g % 3, 'c' || g FROM generate_series(1, 500) g;",
    )
    return url


@pytest.mark.parametrize(
    ("operation", "instead"),
    [
        (lambda: safe.add_column("items", "n INT NOT NULL"), "backfill it, then safe.set_not_null"),
        (lambda: safe.add_column("items", "at TIMESTAMPTZ DEFAULT now()"), "backfill old rows"),
        (lambda: safe.add_column("items", "o INT REFERENCES owners(id)"), "safe.add_foreign_key"),
        (lambda: safe.add_column("items", "k TEXT UNIQUE"), "safe.add_unique"),
        (lambda: safe.alter_column_type("items", "code", "VARCHAR(5)"), "add a new column"),
        (lambda: safe.rename_column("items", "code", "sku"), "write both"),
    ],
)
def test_what_cannot_be_safe_is_refused_with_the_safe_alternative(
    operation: object, instead: str
) -> None:
    with pytest.raises(UnsafeOperationError, match=instead) as caught:
        operation()  # type: ignore[operator]
    assert "accepted=" in str(caught.value) and "\n" not in str(caught.value)


async def test_an_accepted_risk_runs_and_its_reason_is_logged(
    items: URL, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="app.db.migrate.safe")
    reason = "items has 500 rows and no writers during the release"
    await apply(items, safe.alter_column_type("items", "code", "VARCHAR(10)", accepted=reason))
    assert any(reason in r.getMessage() for r in caplog.records)
    kind = "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
    rows = await fetch(items, f"{kind} WHERE attrelid = 'items'::regclass AND attname = 'code'")
    assert rows == [("character varying(10)",)]


async def test_each_operation_works_and_running_it_again_is_a_no_op(items: URL) -> None:
    operations = [
        safe.add_column("items", "weight INT DEFAULT 7"),
        safe.add_column("items", "note TEXT"),
        safe.add_foreign_key("items_owner_id_fkey", "items", "owner_id", "owners", "id"),
        safe.add_check("items_weight_positive", "items", "weight > 0"),
        safe.set_not_null("items", "code"),
        safe.create_index("idx_items_owner_id", "items", ["owner_id"]),
        safe.add_unique("items_code_key", "items", "code"),
        safe.create_table(
            "tags",
            "    id INT PRIMARY KEY,\n    item_id INT REFERENCES items(id)",
            indexes=[("idx_tags_item_id", "item_id")],
        ),
    ]
    for _ in range(2):
        await apply(items, *operations)
    assert await fetch(items, "SELECT count(*) FROM items WHERE weight = 7") == [(500,)]
    constraints = await fetch(
        items,
        "SELECT conname, contype::text, convalidated FROM pg_constraint"
        " WHERE conrelid = 'items'::regclass AND contype <> 'n' ORDER BY 1",  # n: PG 18's NOT NULL
    )
    assert constraints == [
        ("items_code_key", "u", True),
        ("items_owner_id_fkey", "f", True),
        ("items_pkey", "p", True),
        ("items_weight_positive", "c", True),
    ]  # and the helper CHECK of set_not_null is gone
    not_null = "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'items'::regclass"
    assert await fetch(items, f"{not_null} AND attname = 'code'") == [(True,)]
    indexes = await fetch(
        items,
        "SELECT c.relname, x.indisvalid FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid"
        " WHERE c.relname IN ('idx_items_owner_id', 'items_code_key', 'idx_tags_item_id')"
        " ORDER BY 1",
    )
    assert indexes == [
        ("idx_items_owner_id", True),
        ("idx_tags_item_id", True),
        ("items_code_key", True),
    ]

    removals = [
        safe.drop_table("tags"),
        safe.drop_index("idx_items_owner_id"),
        safe.drop_column("items", "note"),
    ]
    for _ in range(2):
        await apply(items, *removals)
    assert await fetch(items, "SELECT to_regclass('tags'), to_regclass('idx_items_owner_id')") == [
        (None, None)
    ]
    assert await fetch(items, "SELECT count(*) FROM items") == [(500,)]


def test_offline_sql_is_the_same_safe_statements() -> None:
    sql = offline(
        safe.add_column("items", "note TEXT"),
        safe.add_foreign_key("items_owner_id_fkey", "items", "owner_id", "owners", "id"),
        safe.create_index("idx_items_owner_id", "items", "owner_id"),
    )
    assert "SET lock_timeout = '25ms'" in sql
    assert "ALTER TABLE items ADD COLUMN IF NOT EXISTS note TEXT;" in sql
    assert "REFERENCES owners(id) NOT VALID" in sql
    assert "ALTER TABLE items VALIDATE CONSTRAINT items_owner_id_fkey;" in sql
    assert "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_items_owner_id ON items(owner_id);" in sql
