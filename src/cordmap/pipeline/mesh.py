"""The mesh stage: a case's labels (manual, else U-Net) meshed into CASE/mesh/.

`mesh_case(CASE)` writes CASE/mesh/<subject>_mesh.{<formats>,json,npz}
(`cordmap.mesh.files.mesh_to_folder`) and records the stage in case.json (inputs, outputs
with checksums, parameters); re-running it with the same parameters on unchanged labels
reports it up to date. `case_meshes(CASE)` gives the meshes of the case's current mesh
stage (meshing first, with the default parameters, only when there is none), so that the
viewer and the report read the meshes the stage made and a case is meshed once.
"""

from __future__ import annotations

from pathlib import Path

import trimesh

from cordmap.case import Case
from cordmap.mesh.files import (
    MeshResult,
    mesh_parameters,
    mesh_to_folder,
    read_mesh_folder,
    read_meshes,
)
from cordmap.mesh.surfaces import DEFAULT_REDUCTION, DEFAULT_SMOOTHING, DEFAULT_THIN_UPSAMPLE
from cordmap.pipeline.stages import MESH_DIR, is_current, mesh_file, stage_inputs

STAGE = "mesh"


def mesh_case(
    case_dir: str | Path,
    *,
    formats=("glb",),
    smoothing: int = DEFAULT_SMOOTHING,
    reduction: float = DEFAULT_REDUCTION,
    thin_upsample: int = DEFAULT_THIN_UPSAMPLE,
    workers: int | None = None,
) -> MeshResult:
    """Mesh the case's labels (manual, else U-Net) into CASE/mesh/ and record the stage.

    When case.json shows the stage already ran with these parameters on unchanged labels
    and its outputs are untouched, nothing is redone (`MeshResult.up_to_date`).

    Parameters
    ----------
    case_dir : str or Path
        The case folder.
    formats : sequence of str
        Export formats (`cordmap.mesh.FORMATS`), e.g. ("glb", "stl").
    smoothing, reduction, thin_upsample
        As for `cordmap.mesh.mesh_labels`; recorded in case.json.
    workers : int, optional
        Processes for the per-label work, this one included; default the CPU cores this
        process may use; 1 starts none. Not a parameter of the stage: the meshes are the
        same whatever it is.

    Returns
    -------
    MeshResult
        The folder, the files written (or kept), each structure's statistics and the
        parameters.
    """
    case = Case.open(case_dir)
    read = stage_inputs(case, STAGE)
    if not read:
        case.labels()  # raises the case's clear error: no labels
    folder, stem = case.path(MESH_DIR), f"{case.subject}_mesh"
    parameters = mesh_parameters(formats, smoothing, reduction, thin_upsample)
    if is_current(case, STAGE, read, parameters):
        files = [case.root / e["path"] for e in case.manifest["stages"][STAGE]["outputs"]]
        return read_mesh_folder(folder, stem, files, parameters)
    return mesh_to_folder(
        case.labels(),
        folder,
        stem,
        formats,
        smoothing,
        reduction,
        thin_upsample,
        workers,
        then=lambda files: case.record(STAGE, inputs=read, outputs=files, parameters=parameters),
    )


def case_meshes(case_dir: str | Path) -> dict[int, trimesh.Trimesh]:
    """The meshes of the case's mesh stage, {label id: mesh in RAS+ mm}.

    Read back from CASE/mesh/ when the stage is current (whatever parameters it ran
    with); otherwise the case is meshed first with the default parameters (GLB export)."""
    case = Case.open(case_dir)
    read = stage_inputs(case, STAGE)
    if not (read and is_current(case, STAGE, read)):
        mesh_case(case.root)
    return read_meshes(mesh_file(case))
