"""The MongoDB store (``pip install 'backbeat[mongodb]'``), on PyMongo's asyncio API."""

from __future__ import annotations

from backbeat.stores.mongodb.store import MongoStore

__all__ = ["MongoStore"]
