"""Imports that must not swallow Ctrl-C.

Some libraries wrap optional imports in `except BaseException` (trimesh does), so a Ctrl-C
pressed while they load is silently eaten and the command runs on. Importing them through
`import_keeping_interrupts` records a Ctrl-C that arrives meanwhile and raises it once the
import is done. `interrupts_held` does the same for any block that must not be cut in two
(an output put in place and recorded).
"""

from __future__ import annotations

import importlib
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType


@contextmanager
def interrupts_held() -> Iterator[None]:
    """Run the block whole: a Ctrl-C that arrives meanwhile is raised after it (in the main
    thread; elsewhere Python delivers no Ctrl-C anyway)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    interrupted = []
    previous = signal.signal(signal.SIGINT, lambda *_: interrupted.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupted:
        raise KeyboardInterrupt


def import_keeping_interrupts(name: str) -> ModuleType:
    """Import module `name`; a Ctrl-C during the import is raised after it."""
    with interrupts_held():
        return importlib.import_module(name)
