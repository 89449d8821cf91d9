"""Mesh a label volume into a folder of exports.

`mesh_to_folder(labels, FOLDER, STEM, ...)` writes FOLDER (replaced whole, atomically):

    <stem>.<fmt>   one file per requested format (.glb, .obj + .mtl, .ply, .stl)
    <stem>.json    per structure: id, name, volume mm³, area mm², watertight,
                   triangles, voxel volume mm³; and the parameters used
    <stem>.npz     the meshes themselves (vertices RAS+ mm, faces) by label id,
                   read back by `read_meshes`

`mesh_label_file(LABELS.nii.gz, OUT_DIR)` does it for a plain label file;
`cordmap.pipeline.mesh` for a case folder (CASE/mesh/, recorded as the mesh stage).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import trimesh

from cordmap.atomic import atomic_dir
from cordmap.errors import CordmapError
from cordmap.mesh.exports import FORMATS, export_meshes
from cordmap.mesh.surfaces import (
    DEFAULT_REDUCTION,
    DEFAULT_SMOOTHING,
    DEFAULT_THIN_UPSAMPLE,
    MeshStats,
    mesh_labels,
    mesh_stats,
)
from cordmap.protocol.schema import LabelSchema
from cordmap.volume import LabelVolume


@dataclass(frozen=True)
class MeshedStructure:
    id: int
    name: str
    voxel_volume_mm3: float
    stats: MeshStats


@dataclass(frozen=True)
class MeshResult:
    folder: Path
    files: list[Path]
    structures: list[MeshedStructure]
    parameters: dict
    up_to_date: bool = False  # read back from an earlier run: nothing was redone


def parse_formats(text: str) -> tuple[str, ...]:
    """'glb,ply' -> ('glb', 'ply'); refuses unknown formats with the list of known ones."""
    formats = tuple(
        dict.fromkeys(f.strip().lower().lstrip(".") for f in text.split(",") if f.strip())
    )
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise CordmapError(
            f"unknown mesh format(s) {unknown or [text]}; choose from {', '.join(FORMATS)} "
            "(comma-separated, e.g. `formats` glb,stl)"
        )
    return formats


def mesh_label_file(
    labels_path: str | Path,
    out_dir: str | Path | None = None,
    *,
    protocol: str | Path | None = None,
    formats=("glb",),
    smoothing: int = DEFAULT_SMOOTHING,
    reduction: float = DEFAULT_REDUCTION,
    thin_upsample: int = DEFAULT_THIN_UPSAMPLE,
    workers: int | None = None,
) -> MeshResult:
    """Mesh a label NIfTI file into `out_dir` (default: `<name>_mesh/` beside it).

    Parameters
    ----------
    labels_path : str or Path
        The label NIfTI file.
    out_dir : str or Path, optional
        Output folder (replaced whole); default `<name>_mesh/` beside the file.
    protocol : str or Path, optional
        Annotation protocol JSON naming the labels; default the shipped one.
    formats : sequence of str
        Export formats (`FORMATS`), e.g. ("glb", "stl").
    smoothing, reduction, thin_upsample
        As for `cordmap.mesh.mesh_labels`.
    workers : int, optional
        Processes for the per-label work, this one included; default the CPU cores this
        process may use; 1 starts none. The meshes are the same whatever it is.

    Returns
    -------
    MeshResult
        The folder, the files written, each structure's statistics and the parameters.
    """
    from cordmap.io.nifti import read_labels

    labels_path = Path(labels_path)
    stem = labels_path.name.split(".nii")[0]
    out_dir = Path(out_dir) if out_dir else labels_path.with_name(f"{stem}_mesh")
    labels = read_labels(labels_path, LabelSchema.load(protocol))
    return mesh_to_folder(
        labels, out_dir, f"{stem}_mesh", formats, smoothing, reduction, thin_upsample, workers
    )


def read_meshes(path: str | Path) -> dict[int, trimesh.Trimesh]:
    """Meshes written by the mesh stage (`<stem>_mesh.npz`), {label id: mesh}."""
    with np.load(path) as data:
        return {
            int(i): trimesh.Trimesh(data[f"vertices_{i}"], data[f"faces_{i}"], process=False)
            for i in data["ids"]
        }


def _write_meshes(meshes: dict[int, trimesh.Trimesh], path: Path) -> None:
    arrays: dict[str, np.ndarray] = {"ids": np.array(list(meshes), dtype=np.int64)}
    for i, mesh in meshes.items():
        arrays[f"vertices_{i}"] = np.asarray(mesh.vertices)
        arrays[f"faces_{i}"] = np.asarray(mesh.faces)
    with open(path, "wb") as file:
        # numpy's stub cannot tell that no key of `arrays` is its keyword allow_pickle
        np.savez_compressed(file, **arrays)  # type: ignore[arg-type]


def mesh_parameters(formats, smoothing, reduction, thin_upsample) -> dict:
    """The parameters the meshes are made with, as the summary JSON (and case.json) keep them."""
    return {
        "formats": list(formats),
        "smoothing": smoothing,
        "reduction": reduction,
        "thin_upsample": thin_upsample,
    }


def read_mesh_folder(folder: Path, stem: str, files: list[Path], parameters: dict) -> MeshResult:
    """The result of an earlier `mesh_to_folder` that wrote `files`, read back from its
    summary JSON."""
    summary = json.loads((folder / f"{stem}.json").read_text(encoding="utf-8"))
    structures = [
        MeshedStructure(
            s["id"],
            s["name"],
            s["voxel_volume_mm3"],
            MeshStats(s["volume_mm3"], s["area_mm2"], s["watertight"], s["triangles"]),
        )
        for s in summary["structures"]
    ]
    return MeshResult(folder, files, structures, parameters, up_to_date=True)


def mesh_to_folder(
    labels: LabelVolume,
    folder: Path,
    stem: str,
    formats,
    smoothing,
    reduction,
    thin_upsample,
    workers: int | None,
    then: Callable[[list[Path]], None] | None = None,
) -> MeshResult:
    """Mesh `labels` (`cordmap.mesh.mesh_labels`) and write FOLDER (replaced whole,
    atomically): the exports in `formats`, `<stem>.json` and `<stem>.npz`. `then` gets the
    files written once they are in place, before a Ctrl-C can stop the run (to record
    them: `cordmap.atomic.atomic_dir`)."""
    formats = tuple(formats)
    parameters = mesh_parameters(formats, smoothing, reduction, thin_upsample)
    meshes = mesh_labels(
        labels,
        smoothing=smoothing,
        reduction=reduction,
        thin_upsample=thin_upsample,
        workers=workers,
    )
    counts = labels.counts()
    structures = [
        MeshedStructure(
            label_id, labels.schema[label_id].name, counts[label_id] * labels.voxel_volume, stats
        )
        for label_id, stats in mesh_stats(meshes).items()
    ]
    files: list[Path] = []
    with atomic_dir(folder, None if then is None else lambda: then(files)) as tmp:
        names = []
        for fmt in formats:
            names += [p.name for p in export_meshes(meshes, labels.schema, tmp / f"{stem}.{fmt}")]
        summary = {
            "parameters": parameters,
            "structures": [
                {
                    "id": s.id,
                    "name": s.name,
                    "voxel_volume_mm3": round(s.voxel_volume_mm3, 3),
                    **{
                        k: round(v, 3) if isinstance(v, float) else v
                        for k, v in asdict(s.stats).items()
                    },
                }
                for s in structures
            ],
        }
        (tmp / f"{stem}.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
        _write_meshes(meshes, tmp / f"{stem}.npz")
        names += [f"{stem}.json", f"{stem}.npz"]
        files += [folder / name for name in names]
    return MeshResult(folder, files, structures, parameters)
