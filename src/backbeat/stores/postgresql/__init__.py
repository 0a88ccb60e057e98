"""The PostgreSQL store (``pip install 'backbeat[postgresql]'``, driver asyncpg)."""

from __future__ import annotations

from backbeat.stores.postgresql.store import PostgresStore

__all__ = ["PostgresStore"]
