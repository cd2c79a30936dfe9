"""A schema's shape read from `pg_catalog`, to compare the databases that the three ways of
migrating (Alembic, plain SQL, init_db) produce: columns with types, nullability,
defaults and collations; indexes with definitions and validity; constraints with
definitions and whether they are validated; and what the guide's schema never has:
UNLOGGED tables, triggers, row-level security and its policies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, text

BOOKKEEPING_TABLES = frozenset({"alembic_version", "database_environment"})

_TABLES = """
SELECT c.relname, c.relpersistence = 'u',
       CASE WHEN c.relforcerowsecurity THEN 'forced'
            WHEN c.relrowsecurity THEN 'enabled' ELSE 'off' END
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = :schema AND c.relkind IN ('r', 'p')
"""

_COLUMNS = """
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid),
       CASE WHEN a.attcollation <> t.typcollation THEN co.collname END
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_collation co ON co.oid = a.attcollation
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE n.nspname = :schema AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY c.relname, a.attnum
"""

_INDEXES = """
SELECT t.relname, i.relname, pg_get_indexdef(x.indexrelid), x.indisvalid
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = :schema
"""

_CONSTRAINTS = """
SELECT t.relname, con.conname, con.contype::text, pg_get_constraintdef(con.oid), con.convalidated
FROM pg_constraint con
JOIN pg_class t ON t.oid = con.conrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = :schema
"""


_TRIGGERS = """
SELECT c.relname, tg.tgname, pg_get_triggerdef(tg.oid)
FROM pg_trigger tg JOIN pg_class c ON c.oid = tg.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = :schema AND NOT tg.tgisinternal
"""

_POLICIES = """
SELECT c.relname, p.polname, pg_get_expr(p.polqual, p.polrelid)
FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = :schema
"""


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    not_null: bool
    default: str | None
    collation: str | None = None
    """Only when it is not the type's default collation."""


@dataclass
class Table:
    columns: list[Column] = field(default_factory=list)
    indexes: dict[str, tuple[str, bool]] = field(default_factory=dict)
    """name -> (definition, valid)"""
    constraints: dict[str, tuple[str, str, bool]] = field(default_factory=dict)
    """name -> (type letter, definition, validated)"""
    unlogged: bool = False
    row_security: str = "off"
    """off, enabled or forced"""
    triggers: dict[str, str] = field(default_factory=dict)
    policies: dict[str, str] = field(default_factory=dict)


Schema = dict[str, Table]


def read_schema(
    conn: Connection, schema: str = "public", *, skip: frozenset[str] = BOOKKEEPING_TABLES
) -> Schema:
    """The tables of `schema` (but `skip`), with definitions written relative to it."""
    # With the schema alone on the search path, definitions don't carry its name, so
    # two schemas (or databases) with the same objects read the same.
    conn.execute(text("SELECT set_config('search_path', :s, true)"), {"s": schema})
    tables: Schema = {}
    params = {"schema": schema}
    for table, unlogged, row_security in conn.execute(text(_TABLES), params):
        if table not in skip:
            tables[table] = Table(unlogged=unlogged, row_security=row_security)
    for table, *column in conn.execute(text(_COLUMNS), params):
        if table in tables:
            tables[table].columns.append(Column(*column))
    for table, name, definition in conn.execute(text(_TRIGGERS), params):
        if table in tables:
            tables[table].triggers[name] = definition
    for table, name, definition in conn.execute(text(_POLICIES), params):
        if table in tables:
            tables[table].policies[name] = str(definition)
    for table, name, definition, valid in conn.execute(text(_INDEXES), params):
        if table in tables:
            # pg_get_indexdef always names the table's schema: drop it, as for the rest.
            definition = re.sub(r" ON (ONLY )?[^ .]+\.", r" ON \1", definition, count=1)
            tables[table].indexes[name] = (definition, valid)
    for table, name, kind, definition, validated in conn.execute(text(_CONSTRAINTS), params):
        if table in tables:
            tables[table].constraints[name] = (kind, definition, validated)
    return tables


def diff_schemas(expected: Schema, actual: Schema, *, column_order: bool = False) -> list[str]:
    """Every difference, one readable line each; empty when the schemas are identical.

    Columns are compared by name: their order carries no meaning for this project's code
    (no `SELECT *`, no positional `COPY`), and a revision's `ADD COLUMN` appends where
    `create_all` follows the model. `column_order` compares positions too (the guide's
    tables against the guide's DDL); `moved_columns` reports them as information.
    """
    lines: list[str] = []
    for name in sorted(expected.keys() - actual.keys()):
        lines.append(f"table {name}: missing")
    for name in sorted(actual.keys() - expected.keys()):
        lines.append(f"table {name}: unexpected")
    for name in sorted(expected.keys() & actual.keys()):
        want, got = expected[name], actual[name]
        want_cols = _by_name(want.columns, column_order)
        got_cols = _by_name(got.columns, column_order)
        for col in want_cols.keys() | got_cols.keys():
            if want_cols.get(col) != got_cols.get(col):
                lines.append(
                    f"{name}.{col}: expected {_show(want_cols.get(col))}, "
                    f"got {_show(got_cols.get(col))}"
                )
        for what, wanted, found in (
            ("UNLOGGED", want.unlogged, got.unlogged),
            ("row-level security", want.row_security, got.row_security),
        ):
            if wanted != found:
                lines.append(f"{name}: {what} expected {wanted}, got {found}")
        maps: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
            ("index", want.indexes, got.indexes),
            ("constraint", want.constraints, got.constraints),
            ("trigger", want.triggers, got.triggers),
            ("policy", want.policies, got.policies),
        ]
        for kind, want_map, got_map in maps:
            for key in sorted(want_map.keys() | got_map.keys()):
                if want_map.get(key) != got_map.get(key):
                    lines.append(
                        f"{name} {kind} {key}: expected {want_map.get(key) or 'none'}, "
                        f"got {got_map.get(key) or 'none'}"
                    )
    return sorted(lines)


def moved_columns(expected: Schema, actual: Schema) -> list[str]:
    """Columns of both schemas that sit at another position: information, never a
    difference (see `diff_schemas`)."""
    lines = []
    for name in sorted(expected.keys() & actual.keys()):
        want = [c.name for c in expected[name].columns]
        got = [c.name for c in actual[name].columns]
        if set(want) == set(got) and want != got:
            lines.append(f"{name}: columns in another order than the models declare: {got}")
    return lines


def _by_name(columns: list[Column], with_position: bool) -> dict[str, tuple[int | None, Column]]:
    return {c.name: (i if with_position else None, c) for i, c in enumerate(columns)}


def _show(entry: tuple[int | None, Column] | None) -> str:
    if entry is None:
        return "none"
    position, col = entry
    null = "NOT NULL" if col.not_null else "NULL"
    collation = f" COLLATE {col.collation}" if col.collation else ""
    where = "" if position is None else f"#{position + 1} "
    return f"{where}{col.type}{collation} {null} DEFAULT {col.default}"
