"""The safe operations' first home, kept for the revisions that import it from here.

Revisions are history: every revision written before the move says
`from app.db import safe_migrations as safe`, so this name stays. New code and new
revisions import `app.db.migrate.safe`.
"""

from app.db.migrate.safe import *  # noqa: F403
from app.db.migrate.safe import __all__  # noqa: F401
