"""The web dashboard and REST API of a backbeat store (``pip install 'backbeat[web]'``).

``create_app(scheduler_or_store_url, token=None)`` returns a FastAPI application to mount in
an application (``app.mount("/backbeat", create_app(scheduler))``) or to serve
(``backbeat dashboard --store URL``).
"""

from __future__ import annotations

from backbeat.model.history import HistoryEntry
from backbeat.web.app import create_app
from backbeat.web.history import TaskSummary, summarize

__all__ = ["HistoryEntry", "TaskSummary", "create_app", "summarize"]
