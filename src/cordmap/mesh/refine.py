"""Smoothing and simplification of one surface mesh, keeping closed meshes closed.

Smoothing is Taubin's lambda/mu filter (trimesh.smoothing.filter_taubin): alternating
shrinking and inflating Laplacian steps that remove the voxel staircase without the
volume loss of plain Laplacian smoothing, so thin roots are not smoothed away.

Simplification is quadric edge collapse (fast-simplification). Decimation can leave a
closed mesh with a hole or a non-manifold edge; when it does, the step is retried
keeping twice as many triangles, and if that still fails the undecimated mesh is kept,
so a watertight input always gives a watertight output.
"""

from __future__ import annotations

import fast_simplification
import numpy as np
import trimesh
from trimesh.smoothing import filter_taubin

#: Meshes with fewer triangles than this are not decimated (a voxel is 8 triangles).
MIN_TRIANGLES = 200
#: Taubin filter weights: shrink by lambda, inflate by mu (|mu| > lambda).
TAUBIN_LAMBDA = 0.5
TAUBIN_MU = -0.53


def smooth(mesh: trimesh.Trimesh, iterations: int) -> trimesh.Trimesh:
    """Taubin-smooth `mesh` in place for `iterations` lambda/mu pairs; return it."""
    if iterations > 0 and len(mesh.faces):
        filter_taubin(mesh, lamb=TAUBIN_LAMBDA, nu=-TAUBIN_MU, iterations=iterations)
    return mesh


def simplify(mesh: trimesh.Trimesh, reduction: float) -> trimesh.Trimesh:
    """Remove about `reduction` (0..1) of the triangles; never open a closed mesh."""
    n_faces = len(mesh.faces)
    keep = max(int(round(n_faces * (1.0 - reduction))), MIN_TRIANGLES)
    if reduction <= 0 or keep >= n_faces:
        return mesh
    closed = mesh.is_watertight
    while keep < n_faces:
        vertices, faces = fast_simplification.simplify(
            mesh.vertices, mesh.faces, target_count=keep)
        result = trimesh.Trimesh(vertices, faces, process=True)
        if not closed or result.is_watertight:
            return result
        keep *= 2
    return mesh
