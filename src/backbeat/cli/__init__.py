"""The ``backbeat`` command line: a worker process, the dashboard, and commands to look at and
steer a store's tasks and dead letters.

The typer application lives in :mod:`backbeat.cli.app`; importing this package stays cheap so
that :mod:`backbeat.web` can share :mod:`backbeat.cli.admin` without loading typer.
"""

from __future__ import annotations

from typing import Any


def main() -> None:
    """Entry point of the ``backbeat`` console script."""
    from backbeat.cli.app import app

    app()


def __getattr__(name: str) -> Any:
    if name == "app":  # ``from backbeat.cli import app`` (typer's CliRunner) without an eager import
        from backbeat.cli.app import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["app", "main"]
