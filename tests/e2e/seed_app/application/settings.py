"""Seed 000's settings snippet; only the import differs (and the Redis host, set by the test)."""

from __future__ import annotations

import os
from typing import Any

from backbeat import ApplicationSettings


class Settings(ApplicationSettings):
    # Background Job Store Configuration
    background_job_store: dict[str, Any] = {
        # Redis configuration (recommended for production)
        "redis_host": os.environ.get("SEED_REDIS_HOST", "redis"),
        "redis_port": int(os.environ.get("SEED_REDIS_PORT", "6379")),
        "redis_db": 1,  # Separate from session storage (DB 0)
        # Alternative: MongoDB configuration
        # "mongo_uri": "mongodb://root:pass@mongodb:27017/?authSource=admin",  # pragma: allowlist secret
        # "mongo_db": "cml_cloud_manager",
        # "mongo_collection": "background_jobs",
    }
