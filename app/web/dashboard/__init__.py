"""The collection jobs' dashboard: server-rendered pages on the API's package, its
permissions and its live events (docs/web.md)."""

from app.web.dashboard.routes import BULK_CAP, create_dashboard_router

__all__ = ["BULK_CAP", "create_dashboard_router"]
