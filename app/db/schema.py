"""`init_db`'s first home, kept for code that imported it from here (the README named
`app.db.schema.init_db`). New code imports `app.db.reset`."""

from app.db.reset.init_db import INIT_DB_LOCK_KEY, Phase, ResetPlan, init_db

__all__ = ["INIT_DB_LOCK_KEY", "Phase", "ResetPlan", "init_db"]
