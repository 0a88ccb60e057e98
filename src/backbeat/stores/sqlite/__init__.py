"""The SQLite store, the embedded default (one file, the standard library's driver)."""

from __future__ import annotations

from backbeat.stores.sqlite.store import SQLiteStore

__all__ = ["SQLiteStore"]
