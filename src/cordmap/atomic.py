"""Write files and folders atomically: to a temporary name beside the target, then rename.

A crash or an error half-way leaves the old target (or nothing) in place, never a
half-written file; the temporary files a killed run left are removed by the next write of
the same target.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from cordmap.interrupts import interrupts_held


@contextmanager
def atomic_file(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces `target`."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{glob.escape(target.name)}.*.part*"):  # a killed run's
        if stale.is_file():
            stale.unlink(missing_ok=True)
    # keep the target's extension so that format-sniffing writers (nibabel) still work
    suffix = ".part" + "".join(target.suffixes[-2:])
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_dir(target: str | os.PathLike, then: Callable[[], None] | None = None) -> Iterator[Path]:
    """Yield a temporary folder to fill; on success it replaces the folder `target`.

    `then` runs once the folder is in place, with Ctrl-C held from the rename to its end,
    so that a run is never cut between putting an output in place and recording it."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_dirs(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; give the usual permissions
        with interrupts_held():
            if target.exists():
                old = target.with_name(f".{target.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(target, old)
                os.replace(tmp, target)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, target)
            if then is not None:
                then()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def clean_stale(target: str | os.PathLike) -> None:
    """Remove what a killed run left of writing `target` or inside it: temporary folders
    beside it (`.NAME.*.part`, `.NAME.old`) and temporary files in it (`.*.part*`)."""
    target = Path(target)
    if target.parent.is_dir():
        _remove_stale_dirs(target)
    if target.is_dir():
        for stale in target.glob(".*.part*"):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)


def _remove_stale_dirs(target: Path) -> None:
    """Temporary folders a killed `atomic_dir` left beside `target`."""
    for stale in [
        *target.parent.glob(f".{glob.escape(target.name)}.*.part"),
        target.parent / f".{target.name}.old",
    ]:
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)


def write_text(target: str | os.PathLike, text: str) -> Path:
    """Atomically write a UTF-8 text file."""
    with atomic_file(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
