"""What every command shares: the app, the consoles, the `command` decorator that turns
errors into one line, and the parsing of option values.

Errors of the CordmapError family are printed as one line and exit with status 1;
`--debug` shows the traceback instead. The library names its parameters in messages
between backticks (`top`); the CLI shows them as the options that set them (--top).
"""

from __future__ import annotations

import functools
import re
from typing import Annotated

import click
import typer
from rich.console import Console
from rich.markup import escape

from cordmap import __version__
from cordmap.errors import CordmapError, missing_extra

app = typer.Typer(
    help="Plan epidural stimulation over the lumbosacral spinal cord from MRI.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)


def command(func_or_name=None, /, *, group: typer.Typer | None = None, **options):
    """Register a command whose CordmapErrors (and failed file operations, and a missing
    optional extra) become one-line messages and exit code 1.

    Use as `@command`, `@command()` or `@command("name", help=...)`; `group` registers it
    in a sub-app (e.g. `cordmap study ...`) instead of the main one.
    """
    if callable(func_or_name):
        return command()(func_or_name)

    def register(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            try:
                return func(*args, **kwargs)
            except (CordmapError, OSError, ModuleNotFoundError) as exc:
                if _debug() or (
                    isinstance(exc, ModuleNotFoundError) and missing_extra(exc) is None
                ):
                    raise
                err_console.print(
                    f"[bold red]error:[/] {escape(_message(exc))}", highlight=False, soft_wrap=True
                )
                raise typer.Exit(1) from None

        return (group or app).command(func_or_name, **options)(wrapper)

    return register


def _debug() -> bool:
    """Whether `--debug` was given (read from the command line being run)."""
    context = click.get_current_context(silent=True)
    return bool(context and context.find_root().params.get("debug"))


#: Parameters of the library whose option is not simply --name-with-dashes.
OPTIONS = {
    "paddles_file": "--paddles",
    "pixel_mm": "--pixel",
    "n_slices": "--slices",
    "formats": "--format",
}
#: Parameters the library names in its messages, as `name`.
PARAMETERS = {
    "anchor",
    "annotated",
    "caudal",
    "data",
    "enlargement",
    "formats",
    "keep_largest",
    "labels",
    "n_slices",
    "out",
    "paddle",
    "paddles_file",
    "patch",
    "phantoms",
    "pixel_mm",
    "port",
    "rostral",
    "series",
    "sides",
    "slice_thickness",
    "spacing",
    "spinal_levels",
    "targets",
    "top",
    "workers",
}


def as_options(message: str) -> str:
    """A library message with its `parameter` names written as the CLI's options."""
    return re.sub(
        r"`([a-z_]+)`",
        lambda m: OPTIONS.get(m[1], "--" + m[1].replace("_", "-")) if m[1] in PARAMETERS else m[0],
        message,
    )


def _message(exc: Exception) -> str:
    """One line for an error: a CordmapError's message; for a missing optional package,
    the extra to install; for a failed file operation (a read-only folder, a name too long,
    a device instead of a file) what failed, on what."""
    if isinstance(exc, CordmapError):
        return as_options(str(exc))
    if isinstance(exc, ModuleNotFoundError):
        return str(missing_extra(exc))
    assert isinstance(exc, OSError)  # the third family `command` catches
    where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f)
    return (
        f"{exc.strerror or type(exc).__name__}{': ' + where if where else ''}; check the "
        "path and its permissions (nothing half-written was left)"
    )


def _version(value: bool):
    if value:
        console.print(f"cordmap {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = None,
):
    """Plan epidural stimulation over the lumbosacral spinal cord from MRI."""


def parse_three(text: str | None, option: str, convert: type, rule: str):
    """'0.8,0.8,3' -> (0.8, 0.8, 3.0): three positive values of an option, or None."""
    if text is None:
        return None
    try:
        values = tuple(convert(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) <= 0:
        raise CordmapError(f"{option} '{text}' must be {rule}")
    return values


def parse_spacing(text: str | None) -> tuple[float, float, float] | None:
    return parse_three(
        text, "--spacing", float, "three positive mm values: X,Y,SLICE (e.g. 0.8,0.8,3)"
    )


def parse_patch(text: str | None) -> tuple[int, int, int] | None:
    return parse_three(
        text,
        "--patch",
        int,
        "three positive voxel counts X,Y,Z (e.g. 48,48,48), each divisible by 2**depth",
    )
