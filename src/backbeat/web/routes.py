"""The REST API: tasks, runs, history, dead letters and counts, under ``/api``."""

from __future__ import annotations

import enum
import secrets
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from backbeat.api.admin import Admin, RetryRefusedError, TaskState
from backbeat.api.history import DURATION_PATTERN, parse_since
from backbeat.model.history import CURSOR_PATTERN, HistoryOutcome
from backbeat.web.history import summarize
from backbeat.web.schemas import (
    DeadLetterOut,
    ErrorOut,
    HistoryEntryOut,
    HistoryOut,
    HistoryPageOut,
    RunOut,
    RunStarted,
    StatsOut,
    TaskOut,
    TaskSummaryOut,
)

Responses = dict[int | str, dict[str, Any]]
OutcomeName = enum.StrEnum("OutcomeName", {name: name for name in ["failed", *HistoryOutcome]})  # type: ignore[misc]
"""An outcome filter: a run outcome, or ``failed``."""
TaskId = Annotated[str, Path(description="The task's id")]
LetterId = Annotated[str, Path(description="The dead letter's id (the failed run's id)")]

NOT_FOUND: Responses = {404: {"model": ErrorOut, "description": "No such id"}}
CONFLICT: Responses = {409: {"model": ErrorOut, "description": "Refused now"}}
UNAVAILABLE: Responses = {503: {"model": ErrorOut, "description": "The store is unreachable"}}
INVALID: Responses = {400: {"model": ErrorOut, "description": "A filter or cursor that is not valid"}}
STORE_HISTORY = (
    "the newest {window} finished runs of every process on this store (its run history), and per "
    "task over them: success rate, last failure, duration p50 / p95 / max"
)


def token_guard(token: str | None) -> Sequence[Any]:
    """The dependencies of mutating routes: a bearer-token check when ``token`` is set."""
    if token is None:
        return []
    bearer = HTTPBearer(auto_error=False, description="The dashboard's token (backbeat dashboard --token)")
    expected = token.encode()

    # the default, not an Annotated hint: a hint naming the local ``bearer`` cannot be resolved
    def require_token(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:  # noqa: B008
        if credentials is None or not secrets.compare_digest(credentials.credentials.encode(), expected):
            raise HTTPException(
                401, "this action needs the bearer token", headers={"WWW-Authenticate": "Bearer"}
            )

    return [Depends(require_token)]


def api_router(admin: Admin, history_window: int, token: str | None) -> APIRouter:
    """The ``/api`` routes over ``admin``; mutating ones need ``token`` when it is set."""
    router = APIRouter(responses=UNAVAILABLE)
    guard = token_guard(token)
    auth: Responses = {401: {"model": ErrorOut, "description": "Missing or wrong token"}}
    mutating = {**NOT_FOUND, **(auth if token else {})}
    _task_routes(router, admin, guard, mutating)
    _run_routes(router, admin, history_window)
    _dead_letter_routes(router, admin, guard, mutating)
    return router


def _task_routes(router: APIRouter, admin: Admin, guard: Sequence[Any], mutating: Responses) -> None:

    @router.get("/tasks", tags=["tasks"])
    async def list_tasks(
        tag: Annotated[str | None, Query(description="Only tasks with this tag")] = None,
        name: Annotated[str | None, Query(description="Only tasks with this name")] = None,
        state: Annotated[TaskState | None, Query(description="Only tasks in this state")] = None,
    ) -> list[TaskOut]:
        """Stored tasks with their next run, last outcome, tags and state."""
        return [TaskOut.of(info) for info in await admin.tasks(tag=tag, name=name, state=state)]

    @router.get("/tasks/{task_id}", tags=["tasks"], responses=NOT_FOUND)
    async def get_task(task_id: TaskId) -> TaskOut:
        """One task."""
        return TaskOut.of(await admin.task(task_id))

    @router.post("/tasks/{task_id}/pause", tags=["tasks"], responses=mutating, dependencies=guard)
    async def pause_task(task_id: TaskId) -> TaskOut:
        """Stop a task from firing until it is resumed."""
        return TaskOut.of(await admin.pause(task_id))

    @router.post("/tasks/{task_id}/resume", tags=["tasks"], responses=mutating, dependencies=guard)
    async def resume_task(task_id: TaskId) -> TaskOut:
        """Let a paused task fire again, from its next fire time after now."""
        return TaskOut.of(await admin.resume(task_id))

    @router.post(
        "/tasks/{task_id}/trigger",
        tags=["tasks"],
        responses={**mutating, **CONFLICT},
        dependencies=guard,
    )
    async def trigger_task(task_id: TaskId) -> RunStarted:
        """Run a task once now, besides its schedule (409 when ``max_instances`` runs exist)."""
        run_id = await admin.trigger(task_id)
        if run_id is None:
            raise RetryRefusedError(
                f"task {task_id!r} already has as many runs as it may (max_instances, or a run under its"
                " overlap policy); not triggered"
            )
        return RunStarted(run_id=run_id, detail=f"triggered {task_id}")

    @router.delete(
        "/tasks/{task_id}", tags=["tasks"], status_code=204, responses=mutating, dependencies=guard
    )
    async def remove_task(task_id: TaskId) -> Response:
        """Remove a task (a run in flight finishes)."""
        await admin.remove(task_id)
        return Response(status_code=204)


def _run_routes(router: APIRouter, admin: Admin, history_window: int) -> None:
    @router.get("/runs", tags=["runs"])
    async def list_runs(
        task_id: Annotated[str | None, Query(description="Only runs of this task")] = None,
    ) -> list[RunOut]:
        """Runs now in the store, with the process (``owner``) that holds each."""
        return [RunOut.of(run) for run in await admin.runs(task_id)]

    @router.get("/runs/history", tags=["runs"], responses=INVALID)
    async def runs_history(
        task_id: Annotated[str | None, Query(description="Only runs of this task")] = None,
        outcome: Annotated[
            list[OutcomeName] | None,
            Query(description="Only runs that ended so (repeatable); 'failed': any failure"),
        ] = None,
        failed: Annotated[bool, Query(description="Only failed runs (failure, retry, dead letter)")] = False,
        since: Annotated[
            str | None,
            Query(
                pattern=DURATION_PATTERN,
                description="Only runs that ended this long ago or later: 30m, 1h, 7d",
            ),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000, description="Runs per page")] = 100,
        cursor: Annotated[
            str | None, Query(pattern=CURSOR_PATTERN, description="The previous page's next_cursor")
        ] = None,
    ) -> HistoryPageOut:
        """Finished runs of every process, newest first, a page at a time."""
        wanted: list[str] | None = [*(outcome or []), *(["failed"] if failed else [])] or None
        try:
            after = None if since is None else parse_since(since)
            page = await admin.run_history(task_id, wanted, after, limit, cursor)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        return HistoryPageOut(
            runs=[HistoryEntryOut.of(e) for e in page.entries], next_cursor=page.next_cursor
        )

    @router.get("/history", tags=["runs"])
    async def run_history(
        limit: Annotated[int, Query(ge=1, le=1000, description="Runs summarized (newest)")] = history_window,
    ) -> HistoryOut:
        """The dashboard's history: the newest runs from the store and a summary per task."""
        page = await admin.run_history(limit=limit)
        return HistoryOut(
            source="store",
            window=limit,
            note=STORE_HISTORY.format(window=limit),
            runs=[HistoryEntryOut.of(entry) for entry in page.entries],
            tasks=[TaskSummaryOut.of(summary) for summary in summarize(page.entries)],
        )

    @router.get("/stats", tags=["stats"])
    async def stats() -> StatsOut:
        """Counts: tasks, paused, orphaned, quarantined, runs, dead letters, next wake-up."""
        return StatsOut.of(await admin.stats())


def _dead_letter_routes(router: APIRouter, admin: Admin, guard: Sequence[Any], mutating: Responses) -> None:

    @router.get("/dead-letters", tags=["dead letters"])
    async def list_dead_letters(
        task_id: Annotated[str | None, Query(description="Only dead letters of this task")] = None,
    ) -> list[DeadLetterOut]:
        """Runs that failed their last attempt, oldest first."""
        return [DeadLetterOut.of(letter) for letter in await admin.dead_letters(task_id)]

    @router.get("/dead-letters/{letter_id}", tags=["dead letters"], responses=NOT_FOUND)
    async def get_dead_letter(letter_id: LetterId) -> DeadLetterOut:
        """One dead letter, with its traceback."""
        return DeadLetterOut.of(await admin.dead_letter(letter_id))

    @router.post(
        "/dead-letters/{letter_id}/retry",
        tags=["dead letters"],
        responses={**mutating, **CONFLICT},
        dependencies=guard,
    )
    async def retry_dead_letter(letter_id: LetterId) -> RunStarted:
        """Run a dead letter's fire time again (409 when its task has ``max_instances`` runs)."""
        run_id = await admin.retry_dead_letter(letter_id)
        return RunStarted(run_id=run_id, detail=f"retrying {letter_id}")

    @router.delete(
        "/dead-letters/{letter_id}",
        tags=["dead letters"],
        status_code=204,
        responses=mutating,
        dependencies=guard,
    )
    async def remove_dead_letter(letter_id: LetterId) -> Response:
        """Forget a dead letter."""
        await admin.remove_dead_letter(letter_id)
        return Response(status_code=204)
