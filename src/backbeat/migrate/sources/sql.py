"""APScheduler's ``SQLAlchemyJobStore``: a table (default ``apscheduler_jobs``) of id, next_run_time
(a UTC timestamp) and job_state (the pickle), read through SQLAlchemy on any of its URLs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa

from backbeat.errors import ConfigurationError, StoreUnavailableError
from backbeat.migrate.sources.base import StoredJob, redacted, unavailable


class SQLSource:
    """The jobs of ``table`` (``schema.table`` for a table in another schema) at a SQLAlchemy URL.

    A plain ``postgresql://`` or ``postgres://`` URL is read with psycopg 3 (the driver
    ``backbeat[migrate]`` installs); a URL naming its driver (``postgresql+psycopg2://``) keeps it.
    """

    def __init__(self, url: str, table: str | None = None) -> None:
        schema, _, name = (table or "apscheduler_jobs").rpartition(".")
        self.description = f"{redacted(url)} {table or 'apscheduler_jobs'}"
        try:
            parsed = sa.engine.make_url(_with_driver(url))
        except sa.exc.ArgumentError as exc:
            raise ConfigurationError(f"{redacted(url)!r} is not a SQLAlchemy URL: {exc}") from exc
        path = parsed.database
        if parsed.get_backend_name() == "sqlite" and path and path != ":memory:" and not Path(path).is_file():
            # SQLite would create an empty file: a mistyped path would read as an empty store
            raise StoreUnavailableError(f"{self.description}: no SQLite file {path!r}")
        self._engine = sa.create_engine(parsed)
        self._table = sa.table(name, sa.column("id"), sa.column("job_state"), schema=schema or None)

    def count(self) -> int:
        try:
            with self._engine.connect() as conn:
                return int(conn.execute(sa.select(sa.func.count()).select_from(self._table)).scalar_one())
        except sa.exc.SQLAlchemyError as exc:
            raise unavailable(self.description, exc) from exc

    def read(self, after: str | None, limit: int) -> list[StoredJob]:
        t = self._table
        query = sa.select(t.c.id, t.c.job_state).order_by(t.c.id).limit(limit)
        if after is not None:
            query = query.where(t.c.id > after)
        try:
            with self._engine.connect() as conn:
                rows = conn.execute(query).all()
        except sa.exc.SQLAlchemyError as exc:
            raise unavailable(self.description, exc) from exc
        return [StoredJob(str(job_id), bytes(state)) for job_id, state in rows]

    def delete(self, job_ids: Sequence[str]) -> None:
        if not job_ids:
            return
        try:
            with self._engine.begin() as conn:
                conn.execute(sa.delete(self._table).where(self._table.c.id.in_(list(job_ids))))
        except sa.exc.SQLAlchemyError as exc:
            raise unavailable(self.description, exc) from exc

    def close(self) -> None:
        self._engine.dispose()


def _with_driver(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    return f"postgresql+psycopg://{rest}" if sep and scheme.lower() in ("postgresql", "postgres") else url
