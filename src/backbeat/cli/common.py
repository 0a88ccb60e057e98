"""What every command shares: the store options, running a coroutine, and one-line errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console

from backbeat.api.admin import Admin, DeadLetterNotFoundError, RetryRefusedError
from backbeat.api.config import DEFAULT_STORE_URL
from backbeat.errors import BackbeatError, ConfigurationError, StoreUnavailableError, TaskNotFoundError

T = TypeVar("T")

console = Console(markup=False)
"""Plain text: task names, triggers (``cron[hour='2']``) and errors are printed as they are,
never read as rich markup."""

StoreOption = Annotated[
    str,
    typer.Option(
        "--store",
        "-s",
        envvar="BACKBEAT_STORE_URL",
        help="Store URL: sqlite:///file.db, redis://host:6379/0, postgresql://..., mongodb://...",
    ),
]
PrefixOption = Annotated[
    str | None,
    typer.Option("--prefix", envvar="BACKBEAT_STORE_PREFIX", help="Key prefix of a Redis store"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]

DEFAULT_STORE = DEFAULT_STORE_URL

USAGE_ERROR = 2
"""Exit code of a wrong URL or option (typer's own usage errors use it too)."""
FAILED = 1
"""Exit code of an unknown id, an unreachable store or a refused operation."""


def fail(message: str, code: int = FAILED) -> NoReturn:
    """Print ``error: message`` on one line of stderr and exit with ``code``."""
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    raise typer.Exit(code)


def with_admin(store: str, prefix: str | None, body: Callable[[Admin], Awaitable[T]]) -> T:
    """Open the store, run ``body(admin)``, close it; backbeat errors become one-line exits."""

    async def go() -> T:
        async with Admin.for_store(store, prefix=prefix) as admin:
            return await body(admin)

    return run_cleanly(go)


def run_cleanly(make: Callable[[], Awaitable[T]]) -> T:
    """``asyncio.run(make())`` with backbeat's errors turned into one-line messages and exit codes."""

    async def go() -> T:
        return await make()

    try:
        return asyncio.run(go())
    except (TaskNotFoundError, DeadLetterNotFoundError, RetryRefusedError) as exc:
        fail(str(exc))
    except ConfigurationError as exc:
        fail(str(exc), USAGE_ERROR)
    except StoreUnavailableError as exc:
        fail(f"store unavailable: {exc}")
    except BackbeatError as exc:
        fail(f"{type(exc).__name__}: {exc}")
    except OSError as exc:  # e.g. a SQLite file in a directory that does not exist
        fail(f"store unavailable: {exc}")


def print_json(value: Any) -> None:
    """Print ``value`` as indented JSON (datetimes as ISO strings)."""
    typer.echo(json.dumps(value, indent=2, default=_default))


def _default(value: Any) -> Any:
    isoformat = getattr(value, "isoformat", None)
    return isoformat() if callable(isoformat) else str(value)
