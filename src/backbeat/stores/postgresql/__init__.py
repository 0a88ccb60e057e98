"""The PostgreSQL store (``pip install 'backbeat[postgresql]'``, driver asyncpg)."""

from __future__ import annotations

from backbeat.stores.postgresql.store import PostgreSQLStore

__all__ = ["PostgreSQLStore"]
