"""Benchmarks: backbeat and APScheduler 3.11 measured side by side (``python -m bench``)."""

import os
import sys
from types import ModuleType
from typing import cast

if os.environ.get("BACKBEAT_BENCH_NO_HIREDIS"):
    # arq brings hiredis, which redis-py then parses replies with; this measures without it
    sys.modules["hiredis"] = cast(ModuleType, None)
