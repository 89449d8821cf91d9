"""Per-label meshing work (surface extraction, smoothing, simplification) over the CPU
cores.

fast-simplification holds the GIL, so threads do not help: `map_labels` forks one child
process per extra core (by default per extra core that other processes leave free). The
children inherit everything the work needs (zmesh's marching-cubes pass, the label
array: no copy on the way in); this process works too, its memory already warm, and
every process takes the next label, largest first, until none is left. Each child sends
back only its finished, simplified meshes, in one message at the end. Forking costs some
tens of milliseconds, so it is done only when the estimated work (surface voxels, 2.7 to
3.3 triangles each on the phantom and PAM50) reaches `PARALLEL_MIN_WORK`, more than one
core is free, and the "fork" start method is available (Linux, macOS); otherwise the
labels are done one after the other here. The results are the same either way: each
label is done on its own by the same function.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Iterator

import numpy as np
import trimesh

from cordmap.errors import CordmapError

#: Less estimated work than this (surface voxels of all labels together, about 200 000
#: triangles) is done in this process alone.
PARALLEL_MIN_WORK = 70_000

MakeMesh = Callable[[int], trimesh.Trimesh]


def map_labels(
    make_mesh: MakeMesh, work: dict[int, float], *, workers: int | None = None
) -> dict[int, trimesh.Trimesh]:
    """`make_mesh(label_id)` for every label of `work` ({label id: estimated work});
    returns {label id: mesh} in the order of `work`.

    workers: processes to use, this one included; default the usable cores that other
    processes are not using right now (`_free_cores`).
    """
    worth_it = len(work) > 1 and sum(work.values()) >= PARALLEL_MIN_WORK and _can_fork()
    if worth_it and workers is None:
        workers = _free_cores()
    if not worth_it or workers < 2:
        return {label_id: make_mesh(label_id) for label_id in work}
    workers = min(workers, len(work))
    context = multiprocessing.get_context("fork")
    order = sorted(work, key=lambda label_id: -work[label_id])
    taken = context.Value("i", 0)  # how many labels of `order` have been taken
    children = []
    try:
        for _ in range(workers - 1):
            receiver, sender = context.Pipe(duplex=False)
            child = context.Process(
                target=_child, args=(make_mesh, order, taken, sender), daemon=True
            )
            child.start()  # forked: the arguments are inherited, not pickled
            sender.close()
            children.append((child, receiver))
        made = dict(_take_labels(make_mesh, order, taken))
        for child, receiver in children:
            made.update(
                (label_id, trimesh.Trimesh(*arrays, process=False))
                for label_id, arrays in _receive(receiver)
            )
    finally:
        for child, _ in children:
            if child.is_alive():  # only after an error here
                child.terminate()
            child.join()
    return {label_id: made[label_id] for label_id in work}


def _take_labels(make_mesh: MakeMesh, order: list[int], taken) -> Iterator:
    """(label id, mesh) for each label this process takes, until none is left."""
    while True:
        with taken.get_lock():
            index = taken.value
            taken.value += 1
        if index >= len(order):
            return
        yield order[index], make_mesh(order[index])


def _child(make_mesh: MakeMesh, order: list[int], taken, sender) -> None:
    try:
        made = [
            (label_id, (mesh.vertices.view(np.ndarray), mesh.faces.view(np.ndarray)))
            for label_id, mesh in _take_labels(make_mesh, order, taken)
        ]
        sender.send((made, None))
    except Exception as error:  # handed to the parent, which raises it
        sender.send(([], error))
    finally:
        sender.close()


def _receive(receiver) -> list:
    try:
        made, error = receiver.recv()
    except EOFError:
        raise CordmapError(
            "a meshing worker process ended without its results (out of memory?); "
            "retry, or mesh with workers=1"
        ) from None
    finally:
        receiver.close()
    if error is not None:
        raise error
    return made


def _free_cores() -> int:
    """The usable cores less those that other processes keep busy: on Linux, the
    machine's cores less its runnable tasks other than this one (/proc/loadavg, the
    least of a few readings a millisecond apart), at least 1. On a machine where other
    work fills the cores, a forked child only adds page faults and cache misses (the
    per-label work costs 13-20 % more CPU in two processes than in one)."""
    try:
        readings = []
        for _ in range(5):
            with open("/proc/loadavg", encoding="ascii") as loadavg:
                readings.append(int(loadavg.read().split()[3].split("/")[0]))
            time.sleep(0.001)
    except (OSError, ValueError, IndexError):  # not Linux
        return _usable_cores()
    busy = min(readings) - 1  # this process is running
    return max(1, min(_usable_cores(), (os.cpu_count() or 1) - busy))


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _can_fork() -> bool:
    return (
        "fork" in multiprocessing.get_all_start_methods()
        and not multiprocessing.current_process().daemon
    )
