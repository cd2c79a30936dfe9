"""`alembic revision --autogenerate` writes revisions on the safe operations.

`rewrite` is env.py's `process_revision_directives`: every operation Alembic detected is
replaced by the `app.db.migrate.safe` call that does the same without long locks. What
has no safe form is left as Alembic wrote it (`op.*`), and `scripts/lint_migrations.py`
then fails the revision until someone rewrites it or marks it accepted with a reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import renderers
from alembic.autogenerate.api import AutogenContext
from alembic.operations import MigrateOperation, ops
from alembic.runtime.migration import MigrationContext
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateColumn, CreateTable

_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]


class SafeCall(MigrateOperation):
    """One `safe.run(...)` line of a generated revision."""

    def __init__(self, code: str, comment: str | None = None) -> None:
        self.code = code
        self.comment = comment

    def reverse(self) -> MigrateOperation:  # pragma: no cover - never asked by autogenerate
        raise NotImplementedError


@renderers.dispatch_for(SafeCall)
def _render(autogen_context: AutogenContext, op: SafeCall) -> str:
    comment = f"# {op.comment}\n" if op.comment else ""
    return f"{comment}safe.run({op.code})"


def rewrite(context: MigrationContext, revision: Any, directives: list[Any]) -> None:
    """Turn the detected operations into safe ones, in both directions."""
    for script in directives:
        plain_left = False
        for container in (script.upgrade_ops, script.downgrade_ops):
            container.ops, left = _rewrite(container.ops)
            plain_left = plain_left or left
        script.imports.add("from app.db.migrate import safe")
        if plain_left:
            script.imports.update({"from alembic import op", "import sqlalchemy as sa"})


def _rewrite(operations: Iterable[MigrateOperation]) -> tuple[list[MigrateOperation], bool]:
    result: list[MigrateOperation] = []
    plain_left = False
    new_tables: dict[str, list[tuple[str, str]]] = {}
    flat: list[MigrateOperation] = []
    for operation in operations:
        if isinstance(operation, ops.ModifyTableOps):
            flat.extend(operation.ops)
        else:
            flat.append(operation)
    for operation in flat:
        if isinstance(operation, ops.CreateTableOp):
            new_tables[operation.table_name] = []
    for operation in flat:
        if _index_of_new_table(operation, new_tables):
            assert isinstance(operation, ops.CreateIndexOp)
            new_tables[operation.table_name].append(
                (str(operation.index_name), _columns(operation.columns))
            )
    for operation in flat:
        if _index_of_new_table(operation, new_tables):
            continue  # built with its table
        safe = _safe(operation, new_tables)
        if safe is None:
            plain_left = True
            result.append(operation)
        else:
            result.extend(safe)
    return result, plain_left


def _index_of_new_table(
    operation: MigrateOperation, new_tables: dict[str, list[tuple[str, str]]]
) -> bool:
    return (
        isinstance(operation, ops.CreateIndexOp)
        and operation.table_name in new_tables
        and not operation.unique
        and _where(operation) is None  # a partial index goes through create_index(where=)
    )


def _where(operation: ops.CreateIndexOp) -> str | None:
    """A partial index's condition as SQL, or None."""
    condition = operation.kw.get("postgresql_where")
    if condition is None or isinstance(condition, str):
        return condition
    return str(condition.compile(dialect=_DIALECT, compile_kwargs={"literal_binds": True}))


def _columns(columns: Iterable[Any]) -> str:
    return ", ".join(c if isinstance(c, str) else str(getattr(c, "name", c)) for c in columns)


def _column_sql(column: sa.Column[Any]) -> str:
    return str(CreateColumn(column).compile(dialect=_DIALECT))


def _safe(
    operation: MigrateOperation, new_tables: dict[str, list[tuple[str, str]]]
) -> list[MigrateOperation] | None:
    """The safe calls for one detected operation, or None when there are none."""
    if isinstance(operation, ops.CreateTableOp):
        table = operation.to_table()
        ddl = str(CreateTable(table).compile(dialect=_DIALECT)).strip()
        inner = ddl[ddl.index("(") + 1 : ddl.rindex(")")]
        parts = [part.strip() for part in re.split(r",\s*\n", inner) if part.strip()]
        # One string per column or constraint (concatenated), so the revision reads as DDL.
        body = "\n".join(
            repr(f"    {part}" + (",\n" if n < len(parts) - 1 else ""))
            for n, part in enumerate(parts)
        )
        indexes = new_tables.get(operation.table_name, [])
        extra = f", indexes={indexes!r}" if indexes else ""
        return [SafeCall(f"safe.create_table({table.name!r}, ({body}){extra})")]
    if isinstance(operation, ops.DropTableOp):
        return [SafeCall(f"safe.drop_table({operation.table_name!r})")]
    if isinstance(operation, ops.AddColumnOp):
        return _add_column(operation.table_name, operation.column)
    if isinstance(operation, ops.DropColumnOp):
        return [SafeCall(f"safe.drop_column({operation.table_name!r}, {operation.column_name!r})")]
    if isinstance(operation, ops.CreateIndexOp):
        unique = ", unique=True" if operation.unique else ""
        where = _where(operation)
        partial = f", where={where!r}" if where else ""
        columns = _columns(operation.columns)
        return [
            SafeCall(
                f"safe.create_index({operation.index_name!r}, {operation.table_name!r}, "
                f"{columns!r}{unique}{partial})"
            )
        ]
    if isinstance(operation, ops.DropIndexOp):
        return [SafeCall(f"safe.drop_index({operation.index_name!r})")]
    if isinstance(operation, ops.CreateForeignKeyOp):
        return [
            SafeCall(
                f"safe.add_foreign_key({operation.constraint_name!r}, "
                f"{operation.source_table!r}, {', '.join(operation.local_cols)!r}, "
                f"{operation.referent_table!r}, {', '.join(operation.remote_cols)!r})"
            )
        ]
    if isinstance(operation, ops.CreateUniqueConstraintOp):
        return [
            SafeCall(
                f"safe.add_unique({operation.constraint_name!r}, {operation.table_name!r}, "
                f"{', '.join(operation.columns)!r})"
            )
        ]
    if isinstance(operation, ops.DropConstraintOp) and operation.table_name:
        return [
            SafeCall(
                f"safe.drop_constraint({operation.constraint_name!r}, {operation.table_name!r})"
            )
        ]
    if isinstance(operation, ops.AlterColumnOp):
        return _alter_column(operation)
    return None


def _add_column(table: str, column: sa.Column[Any]) -> list[MigrateOperation]:
    calls: list[MigrateOperation] = []
    not_null = not column.nullable and column.server_default is None
    definition = _column_sql(column)  # foreign keys are not written inline
    if not_null:
        definition = definition.replace(" NOT NULL", "")
    calls.append(SafeCall(f"safe.add_column({table!r}, {definition!r})"))
    # Its foreign keys come as operations of their own (CreateForeignKeyOp).
    if not_null:
        calls.append(
            SafeCall(
                f"safe.set_not_null({table!r}, {column.name!r})",
                comment=f"backfill {table}.{column.name} here: NOT NULL is checked next",
            )
        )
    return calls


def _alter_column(operation: ops.AlterColumnOp) -> list[MigrateOperation] | None:
    table, column = operation.table_name, operation.column_name
    changes = operation.kw
    calls: list[MigrateOperation] = []
    if "modify_type" in changes and changes["modify_type"] is not None:
        new_type = changes["modify_type"].compile(dialect=_DIALECT)
        calls.append(SafeCall(f"safe.alter_column_type({table!r}, {column!r}, {new_type!r})"))
    if changes.get("modify_nullable") is False:
        calls.append(SafeCall(f"safe.set_not_null({table!r}, {column!r})"))
    if changes.get("modify_nullable") is True:
        calls.append(SafeCall(f"safe.drop_not_null({table!r}, {column!r})"))
    if "modify_server_default" in changes:
        return None  # no safe form written yet: left as op.alter_column for a person
    return calls or None
