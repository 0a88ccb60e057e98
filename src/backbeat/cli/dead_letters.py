"""``backbeat dead-letters ...``: runs that failed their last attempt."""

from __future__ import annotations

from typing import Annotated

import typer

from backbeat.cli import render
from backbeat.cli.common import (
    DEFAULT_STORE,
    JsonOption,
    PrefixOption,
    StoreOption,
    console,
    print_json,
    with_admin,
)

dead_letters_app = typer.Typer(help="Runs that failed their last attempt.", no_args_is_help=True)

LetterId = Annotated[
    str, typer.Argument(help="The dead letter's id (the failed run's id)", show_default=False)
]


@dead_letters_app.command("list")
def list_letters(
    store: StoreOption = DEFAULT_STORE,
    prefix: PrefixOption = None,
    task: Annotated[str | None, typer.Option(help="Only dead letters of this task id")] = None,
    as_json: JsonOption = False,
) -> None:
    """List dead letters, oldest first."""
    letters = with_admin(store, prefix, lambda admin: admin.dead_letters(task))
    if as_json:
        print_json([render.letter_dict(letter) for letter in letters])
    else:
        console.print(render.dead_letters_table(letters))


@dead_letters_app.command("show")
def show(
    letter_id: LetterId,
    store: StoreOption = DEFAULT_STORE,
    prefix: PrefixOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one dead letter with its traceback."""
    letter = with_admin(store, prefix, lambda admin: admin.dead_letter(letter_id))
    if as_json:
        print_json(render.letter_dict(letter, traceback=True))
    else:
        console.print(render.dead_letter_table(letter))


@dead_letters_app.command("retry")
def retry(letter_id: LetterId, store: StoreOption = DEFAULT_STORE, prefix: PrefixOption = None) -> None:
    """Run a dead letter's fire time again (attempt 1, now; a running worker picks it up)."""
    run_id = with_admin(store, prefix, lambda admin: admin.retry_dead_letter(letter_id))
    console.print(f"retrying {letter_id}: run {run_id}")


@dead_letters_app.command("remove")
def remove(letter_id: LetterId, store: StoreOption = DEFAULT_STORE, prefix: PrefixOption = None) -> None:
    """Forget a dead letter."""
    with_admin(store, prefix, lambda admin: admin.remove_dead_letter(letter_id))
    console.print(f"removed dead letter {letter_id}")
