"""APScheduler's ``RedisJobStore``: a hash of id -> pickled state and a sorted set of next run times."""

from __future__ import annotations

from collections.abc import Sequence

import redis

from backbeat.migrate.sources.base import StoredJob, page_after, redacted, unavailable


class RedisSource:
    """The jobs under ``jobs_key`` (default ``apscheduler.jobs``) and ``run_times_key``
    (default ``apscheduler.run_times``) of the database a ``redis://`` URL names."""

    def __init__(self, url: str, jobs_key: str | None = None, run_times_key: str | None = None) -> None:
        self.jobs_key = jobs_key or "apscheduler.jobs"
        self.run_times_key = run_times_key or "apscheduler.run_times"
        self.description = f"{redacted(url)} {self.jobs_key}"
        self._client = redis.Redis.from_url(url, socket_connect_timeout=10, socket_timeout=30)
        self._ids: list[str] | None = None

    def count(self) -> int:
        try:
            return int(self._client.hlen(self.jobs_key))
        except (redis.RedisError, OSError) as exc:
            raise unavailable(self.description, exc) from exc

    def read(self, after: str | None, limit: int) -> list[StoredJob]:
        try:
            if self._ids is None:  # one HKEYS, then pages by HMGET: a hash has no order of its own
                self._ids = sorted(_text(key) for key in self._client.hkeys(self.jobs_key))
            ids = page_after(self._ids, after, limit)
            states = self._client.hmget(self.jobs_key, ids) if ids else []
        except (redis.RedisError, OSError) as exc:
            raise unavailable(self.description, exc) from exc
        # a job removed since HKEYS reads as None: it is gone, nothing to migrate
        return [StoredJob(i, _raw(s)) for i, s in zip(ids, states, strict=True) if s is not None]

    def delete(self, job_ids: Sequence[str]) -> None:
        if not job_ids:
            return
        try:
            with self._client.pipeline() as pipe:  # MULTI/EXEC, as RedisJobStore.remove_job
                pipe.hdel(self.jobs_key, *job_ids)
                pipe.zrem(self.run_times_key, *job_ids)
                pipe.execute()
        except (redis.RedisError, OSError) as exc:
            raise unavailable(self.description, exc) from exc

    def close(self) -> None:
        self._client.close()


# the client is made without decode_responses: replies are bytes (redis-py types them bytes | str)
def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _raw(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()
