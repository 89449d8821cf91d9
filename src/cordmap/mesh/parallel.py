"""Smoothing and simplification of many label meshes, spread over the CPU cores.

fast-simplification holds the GIL, so threads do not help: `refine_meshes` forks a pool
of worker processes that inherit the meshes (no copy on the way in) and send back only
the simplified vertices and faces. Forking costs some tens of milliseconds, so the pool
is used only when there are at least `PARALLEL_MIN_TRIANGLES` triangles to refine, more
than one usable core, and the "fork" start method (Linux, macOS); otherwise the meshes
are refined one after the other in this process. The results are the same either way:
each mesh is refined on its own by `cordmap.mesh.refine`.
"""

from __future__ import annotations

import multiprocessing
import os

import numpy as np
import trimesh

from cordmap.mesh import refine

#: Fewer triangles than this in all meshes together are refined in this process.
PARALLEL_MIN_TRIANGLES = 200_000

# The meshes and parameters the forked workers inherit (set only around the pool's life).
_JOB: dict = {}


def refine_meshes(meshes: dict[int, trimesh.Trimesh], smoothing: int, reduction: float, *,
                  closed: bool | None = None,
                  workers: int | None = None) -> dict[int, trimesh.Trimesh]:
    """Smooth (`smoothing` Taubin passes) then simplify (remove `reduction` of the
    triangles) each mesh; returns {label id: mesh} in the order of `meshes`.

    closed: True when every mesh is known to be closed and consistently oriented (as
        `cordmap.mesh.march_labels` makes them), which skips checking it; None checks.
    workers: processes to use; default the usable cores. The given meshes may be
    smoothed in place (as `refine.smooth` does): pass meshes you no longer need.
    """
    workers = _usable_cores() if workers is None else workers
    total = sum(len(mesh.faces) for mesh in meshes.values())
    if workers < 2 or len(meshes) < 2 or total < PARALLEL_MIN_TRIANGLES or not _can_fork():
        return {label_id: _refine(mesh, smoothing, reduction, closed)
                for label_id, mesh in meshes.items()}
    # largest first, so that no big mesh is left for the end while the other core idles
    order = sorted(meshes, key=lambda label_id: -len(meshes[label_id].faces))
    _JOB.update(meshes=meshes, smoothing=smoothing, reduction=reduction, closed=closed)
    try:
        with multiprocessing.get_context("fork").Pool(min(workers, len(meshes))) as pool:
            refined = dict(pool.imap_unordered(_refine_in_worker, order, chunksize=1))
    finally:
        _JOB.clear()
    return {label_id: trimesh.Trimesh(*refined[label_id], process=False)
            for label_id in meshes}


def _refine(mesh: trimesh.Trimesh, smoothing: int, reduction: float,
            closed: bool | None) -> trimesh.Trimesh:
    return refine.simplify(refine.smooth(mesh, smoothing), reduction, closed=closed)


def _refine_in_worker(label_id: int):
    # smoothing in place changes only this process's copy-on-write pages
    result = _refine(_JOB["meshes"][label_id], _JOB["smoothing"], _JOB["reduction"],
                     _JOB["closed"])
    return label_id, (result.vertices.view(np.ndarray), result.faces.view(np.ndarray))


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _can_fork() -> bool:
    return ("fork" in multiprocessing.get_all_start_methods()
            and not multiprocessing.current_process().daemon)
