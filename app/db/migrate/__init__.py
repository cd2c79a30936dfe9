"""The migration toolkit: what every revision, `alembic` and the migration commands use.

- `safe`: lock-safe schema changes for revisions (`from app.db.migrate import safe`);
- `steps`: running their statements under short lock timeouts, with retries, progress
  and the Alembic configuration (`alembic_config`, `MIGRATIONS`);
- `autogenerate`: `alembic revision --autogenerate` writes safe operations;
- `waits`: who a step waits for, and how far a long step has come;
- `introspect`: a schema read from `pg_catalog` and compared; `feature_state`: where the
  collection-jobs feature stands after an interrupted run.

It builds on the connection core (`app.db`) only; it never imports the development reset.
"""
