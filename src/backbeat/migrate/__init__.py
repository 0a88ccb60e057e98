"""Moving APScheduler 3 job stores into backbeat without unpickling anything but job data.

``open_source(url)`` reads a RedisJobStore, SQLAlchemyJobStore or MongoDBJobStore;
``migrate(source, store)`` turns each job into a task of the same id (see
:func:`backbeat.migrate.convert.to_task`). The ``backbeat migrate apscheduler`` command is this
package with a progress bar and a summary.
"""

from __future__ import annotations

from backbeat.migrate.convert import JobRefusedError, parse_func_map, to_task
from backbeat.migrate.migration import JobReport, MigrationOptions, MigrationReport, Outcome, migrate
from backbeat.migrate.sources import Source, SourceOptions, StoredJob, open_source
from backbeat.migrate.unpickle import RefusedPickleError

__all__ = [
    "JobRefusedError",
    "JobReport",
    "MigrationOptions",
    "MigrationReport",
    "Outcome",
    "RefusedPickleError",
    "Source",
    "SourceOptions",
    "StoredJob",
    "migrate",
    "open_source",
    "parse_func_map",
    "to_task",
]
