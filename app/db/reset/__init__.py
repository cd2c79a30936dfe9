"""The guarded development reset: `init_db` (what `scripts/init_db.py` runs), the
environment marker that tells a development database from production, and sample data.

It builds on the connection core, the embedded server and the migration toolkit (it stamps
the newest revision); nothing below it imports it.
"""

from app.db.reset.init_db import INIT_DB_LOCK_KEY, Phase, ResetPlan, init_db

__all__ = ["INIT_DB_LOCK_KEY", "Phase", "ResetPlan", "init_db"]
