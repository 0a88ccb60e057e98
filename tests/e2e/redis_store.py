"""Skip marker for the seed tests on Redis: only when ``backbeat.stores.redis`` cannot be imported.

Any other Redis failure (server down, store bug) fails the tests: it is not a reason to skip.
"""

from __future__ import annotations

import pytest

try:
    import backbeat.stores.redis  # noqa: F401

    REDIS_STORE_IMPORT_ERROR: str | None = None
except ImportError as exc:  # pragma: no cover - only while the Redis store is unfinished
    REDIS_STORE_IMPORT_ERROR = f"backbeat.stores.redis cannot be imported: {exc!r}"

needs_redis_store = pytest.mark.skipif(
    REDIS_STORE_IMPORT_ERROR is not None, reason=REDIS_STORE_IMPORT_ERROR or ""
)
