"""Per-label meshing work over `workers` processes: this one and a
`concurrent.futures.ProcessPoolExecutor` of the others.

fast-simplification holds the GIL, so threads do not help (the per-label work of the
512 x 512 x 48 phantom on 2 cores: 1.47-1.60 s in one thread, 1.73-1.91 s in two).
The pool's start method is "fork" where that is safe: this process runs no other
thread and has not loaded torch (whose OpenMP threads do not survive a fork). The
processes are forked all at once, before the pool starts its own threads; they inherit
what every label needs (zmesh's marching-cubes pass, the label array: no copy), and each
of them and this process take the next label, largest first, from a shared counter until
none is left (`_forked`). Elsewhere the start method is "forkserver" ("spawn" where there
is none): a fresh interpreter that imports the meshing modules, ~0.8 s of CPU before the
pool can help (a fork takes ~0.01 s). That pool is started only for more work
(`MIN_WORK`), in the background while this process works, which hands it each label
with its raw surface (`_started`); and the script that meshes must guard its work with
``if __name__ == "__main__":`` (Python re-imports it in the pool's processes).

With `workers=1`, too little work, one label, one label holding most of the work
(`MIN_SAVING`), or in a daemonic process (a Dask worker process may not start processes)
every label is done here, one after the other. The results are the same either way:
each label is done on its own by the same function.
Ctrl-C (or an error) stops the pool: no label is taken after it, and the pool's processes
(which ignore Ctrl-C) finish the one they hold.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from cordmap.errors import CordmapError

#: Less estimated work than this (surface voxels of all labels together; about 3
#: triangles each) is done in this process alone: for a forked pool about 200 000
#: triangles (0.5 s of work), for a pool whose processes start an interpreter about
#: 1.5 M triangles (on 2 cores at a load average of 4 the 512 x 512 x 48 phantom,
#: 310 000, took about 2x as long with one as without).
MIN_WORK = {"fork": 70_000, "forkserver": 500_000, "spawn": 500_000}
#: Other processes can at best cut the time to that of the largest label; where that
#: saves less than this share of the work (one label dominating: PAM50's spine, 90 %),
#: every label is done in this process (on 2 busy cores a pool made PAM50 4 % slower).
MIN_SAVING = 0.25
#: Labels queued per process of a forkserver pool, so that it never waits for this
#: process to hand it the next one.
QUEUED_PER_WORKER = 2
#: Imported once by the fork server, before it forks the pool's processes.
PRELOAD = ["cordmap.mesh.surfaces"]

Result = TypeVar("Result")

#: (prepare, run, order, taken) of `map_labels`, for the processes it forks (they inherit
#: it)
_inherited: tuple | None = None


def default_workers() -> int:
    """The number of CPU cores this process may run on.

    Returns
    -------
    int
        `os.process_cpu_count()` where Python has it (3.13+), else the cores of this
        process's CPU affinity, else `os.cpu_count()`; at least 1.
    """
    if hasattr(os, "process_cpu_count"):
        return os.process_cpu_count() or 1
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def map_labels(
    prepare: Callable[[int], tuple],
    run: Callable[..., Result],
    work: Mapping[int, float],
    *,
    workers: int | None = None,
) -> dict[int, Result]:
    """`run(*prepare(label_id))` for every label of `work`, over `workers` processes.

    Parameters
    ----------
    prepare : callable
        `prepare(label_id)` -> the arguments of `run` for that label; called in this
        process or in a process forked from it, so it may use anything this process
        holds.
    run : callable
        The per-label work: a module-level function whose arguments and result can be
        pickled (it runs here or in a pool process).
    work : dict
        {label id: estimated work (surface voxels)}; labels are taken largest first.
    workers : int, optional
        Processes to use, this one included; default `default_workers()`. 1 runs every
        label here, without a pool.

    Returns
    -------
    dict
        {label id: result of `run`}, in the order of `work`; the same whatever `workers`.
    """
    workers = default_workers() if workers is None else workers
    if int(workers) != workers or workers < 1:
        raise CordmapError(f"workers must be a whole number of processes >= 1, not {workers}")
    method = start_method()
    total = sum(work.values())
    worth_it = (
        workers > 1
        and len(work) > 1
        and total >= MIN_WORK[method]
        and max(work.values()) <= (1 - MIN_SAVING) * total
        and not multiprocessing.current_process().daemon
    )
    if not worth_it:
        return {label_id: run(*prepare(label_id)) for label_id in work}
    order = sorted(work, key=lambda label_id: -work[label_id])
    others = min(workers, len(work)) - 1
    context = multiprocessing.get_context(method)
    try:
        if method == "fork":
            made = _forked(context, others, prepare, run, order)
        else:
            made = _started(context, others, prepare, run, order)
    except BrokenProcessPool:
        raise CordmapError(
            "a meshing worker process ended without its results (out of memory? or a "
            "script that meshes without `if __name__ == '__main__':`); retry, or mesh with "
            "workers=1"
        ) from None
    return {label_id: made[label_id] for label_id in work}


def _forked(context, others: int, prepare, run, order: list[int]) -> dict:
    """`map_labels` over forked processes. They inherit `prepare` and what it uses (the
    marching-cubes pass, made by this process's first `prepare`, before the fork); each
    runs one task that takes the next label from a shared counter until none is left and
    sends back its results in one message. A few long tasks, not one per label: this
    process's pool threads need the GIL to hand out a task, and the per-label work holds
    it for up to a second."""
    global _inherited
    taken = context.Value("i", 1)  # how many labels of `order` have been taken
    first = prepare(order[0])
    _inherited = (prepare, run, order, taken)
    # all the processes are forked at the first submit, before the pool starts threads
    pool = ProcessPoolExecutor(others, mp_context=context, initializer=_ignore_interrupts)
    try:
        tasks = [pool.submit(_take_labels) for _ in range(others)]
        made = {order[0]: run(*first)}
        made.update(_take_labels())
        for task in tasks:
            made.update(task.result())
        return made
    finally:
        with taken.get_lock():  # after an error or Ctrl-C: the processes stop
            taken.value = len(order)
        pool.shutdown(wait=True, cancel_futures=True)
        _inherited = None


def _take_labels() -> list[tuple[int, Any]]:
    """(label id, result) for each label this process takes, until none is left."""
    assert _inherited is not None, "set by _forked before it forks this process"
    prepare, run, order, taken = _inherited
    made: list[tuple[int, Any]] = []
    while True:
        with taken.get_lock():
            index = taken.value
            taken.value += 1
        if index >= len(order):
            return made
        made.append((order[index], run(*prepare(order[index]))))


def _started(context, others: int, prepare, run, order: list[int]) -> dict:
    """`map_labels` over processes started by a fork server (or spawned). They start in
    the background while this process works; this process takes labels, largest first,
    and once the pool is up hands it the next ones whenever it holds fewer than
    `QUEUED_PER_WORKER` per process (each with its arguments, prepared here)."""
    if context.get_start_method() == "forkserver":
        context.set_forkserver_preload(PRELOAD)
    pool = ProcessPoolExecutor(others, mp_context=context, initializer=_ignore_interrupts)
    # submit waits until the fork server has imported the meshing modules (~0.8 s)
    up: list[Future] = []
    starter = threading.Thread(target=lambda: up.append(pool.submit(int)), daemon=True)
    starter.start()
    queue = deque(order)
    made: dict[int, Any] = {}
    pending: dict[Future, int] = {}
    finished: Iterable[Future]
    try:
        while queue or pending:
            mine = queue.popleft() if queue else None
            if up and up[0].done():
                while queue and len(pending) < QUEUED_PER_WORKER * others:
                    label_id = queue.popleft()
                    pending[pool.submit(run, *prepare(label_id))] = label_id
            if mine is not None:
                made[mine] = run(*prepare(mine))
                finished = [future for future in pending if future.done()]
            else:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                made[pending.pop(future)] = future.result()
        return made
    finally:
        # also after an error or Ctrl-C: queued labels are dropped, running ones finish
        starter.join()
        pool.shutdown(wait=True, cancel_futures=True)


def start_method() -> str:
    """The start method of `map_labels`'s pool.

    Returns
    -------
    str
        "fork" where it exists and is safe (this process runs no other thread and has not
        loaded torch), else "forkserver", else "spawn".
    """
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1 and "torch" not in sys.modules:
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


def _ignore_interrupts() -> None:
    """Ctrl-C is this process's to handle: it stops the pool (`map_labels`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
