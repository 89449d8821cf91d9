"""Imports that must not swallow Ctrl-C.

Some libraries wrap optional imports in `except BaseException` (trimesh does), so a Ctrl-C
pressed while they load is silently eaten and the command runs on. Importing them through
`import_keeping_interrupts` records a Ctrl-C that arrives meanwhile and raises it once the
import is done.
"""

from __future__ import annotations

import importlib
import signal
import threading
from types import ModuleType


def import_keeping_interrupts(name: str) -> ModuleType:
    """Import module `name`; a Ctrl-C during the import is raised after it."""
    if threading.current_thread() is not threading.main_thread():
        return importlib.import_module(name)
    interrupted = []
    previous = signal.signal(signal.SIGINT, lambda *_: interrupted.append(True))
    try:
        module = importlib.import_module(name)
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupted:
        raise KeyboardInterrupt
    return module
