"""The `cordmap` command: each command parses its options, calls one function, prints.

No logic lives here. Errors of the CordmapError family are printed as one line and
exit with status 1; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from cordmap import __version__
from cordmap.errors import CordmapError

app = typer.Typer(
    help="Plan epidural stimulation over the lumbosacral spinal cord from MRI.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)
_state = {"debug": False}


def command(func):
    """Register a command whose CordmapErrors become one-line messages and exit code 1."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except CordmapError as exc:
            if _state["debug"]:
                raise
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return app.command()(wrapper)


def _version(value: bool):
    if value:
        console.print(f"cordmap {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[Optional[bool], typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version.")] = None,
):
    _state["debug"] = debug
