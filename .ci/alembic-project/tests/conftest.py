"""Our plugin gives pytest-alembic its `alembic_config` and `alembic_engine`."""

pytest_plugins = ["app.testing.plugin"]
