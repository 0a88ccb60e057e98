"""APScheduler's ``MongoDBJobStore``: documents ``{_id, next_run_time, job_state}`` in a collection
(default ``jobs``) of a database (default ``apscheduler``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pymongo
import pymongo.errors

from backbeat.migrate.sources.base import StoredJob, redacted, unavailable


class MongoSource:
    """The jobs of ``collection`` in the database a ``mongodb://`` URL names in its path."""

    def __init__(self, url: str, collection: str | None = None) -> None:
        self._client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
            url, serverSelectionTimeoutMS=10_000
        )
        database = self._client.get_default_database("apscheduler")
        self._jobs = database[collection or "jobs"]
        self.description = f"{redacted(url)} {database.name}.{self._jobs.name}"

    def count(self) -> int:
        try:
            return self._jobs.count_documents({})
        except pymongo.errors.PyMongoError as exc:
            raise unavailable(self.description, exc) from exc

    def read(self, after: str | None, limit: int) -> list[StoredJob]:
        query = {} if after is None else {"_id": {"$gt": after}}
        try:
            docs = list(self._jobs.find(query, {"job_state": 1}).sort("_id", 1).limit(limit))
        except pymongo.errors.PyMongoError as exc:
            raise unavailable(self.description, exc) from exc
        return [StoredJob(str(doc["_id"]), bytes(doc["job_state"])) for doc in docs]

    def delete(self, job_ids: Sequence[str]) -> None:
        if not job_ids:
            return
        try:
            self._jobs.delete_many({"_id": {"$in": list(job_ids)}})
        except pymongo.errors.PyMongoError as exc:
            raise unavailable(self.description, exc) from exc

    def close(self) -> None:
        self._client.close()
