"""Prints the installed version of each main dependency, one line each, so a CI failure can be
read against the releases it ran with."""

from importlib.metadata import PackageNotFoundError, version

MAIN = (
    "apscheduler", "orjson", "reactivex", "typer", "rich", "redis", "asyncpg", "pymongo",
    "starlette", "fastapi", "uvicorn", "opentelemetry-api", "prometheus-client",
    "pytest", "pytest-asyncio", "hypothesis", "schemathesis", "playwright", "mypy", "ruff", "import-linter",
)

for name in MAIN:
    try:
        print(f"{name:<20} {version(name)}")
    except PackageNotFoundError:
        print(f"{name:<20} (not installed)")
