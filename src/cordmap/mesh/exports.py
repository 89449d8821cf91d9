"""Write label meshes for 3D tools: GLB (Blender, web), PLY, STL (3D printing), OBJ.

| format | content |
| --- | --- |
| .glb | glTF binary: one named node per structure (the schema's label name) with the
  schema's colour as a PBR material. glTF is in metres with +Y up, so a root node
  "RAS+ mm" holds the transform from cordmap's RAS+ mm (superior up in Blender, which
  turns glTF's +Y into its +Z); vertex data stay RAS+ mm. |
| .obj | one object per structure (names with `_` for spaces) and a `.mtl` material
  library beside it with the schema's colours; RAS+ mm. |
| .ply | all structures in one binary mesh with per-vertex RGB colours; RAS+ mm. |
| .stl | all structures in one binary mesh (the format has no names or colours); RAS+ mm. |

Every file is written atomically (a crash leaves no half-written file).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh
from trimesh.visual import ColorVisuals, TextureVisuals
from trimesh.visual.material import PBRMaterial

from cordmap.atomic import atomic_file
from cordmap.errors import CordmapError
from cordmap.protocol.schema import LabelSchema

FORMATS = ("glb", "obj", "ply", "stl")
#: Name of the GLB root node that maps RAS+ mm to glTF metres, +Y up.
GLB_ROOT = "RAS+ mm"
#: RAS+ mm -> glTF (x = R, y = S, z = -A), in metres.
GLTF_FROM_RAS_MM = np.array([[1e-3, 0, 0, 0], [0, 0, 1e-3, 0], [0, -1e-3, 0, 0], [0, 0, 0, 1]])


def export_meshes(
    meshes: dict[int, trimesh.Trimesh], schema: LabelSchema, path: str | Path
) -> list[Path]:
    """Write `meshes` ({label id: mesh in RAS+ mm}) to `path`, format by extension.

    Returns the files written (an .obj comes with its .mtl). The meshes are not modified.
    """
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise CordmapError(
            f"{path}: cannot tell the mesh format from the extension '{path.suffix}'; "
            f"use one of {', '.join('.' + f for f in FORMATS)}"
        )
    if not meshes:
        raise CordmapError(f"{path}: there are no meshes to export; mesh some labels first")
    labels = {label_id: schema[label_id] for label_id in meshes}  # unknown id -> clear error
    if fmt == "glb":
        return [_write(path, _glb(meshes, labels))]
    if fmt == "obj":
        return _write_obj(meshes, labels, path)
    combined = trimesh.util.concatenate([_coloured(meshes[i], labels[i].colour) for i in meshes])
    # concatenate is annotated as returning the base Geometry, whose export lacks the
    # file_obj=None default of the Trimesh it returns here
    return [_write(path, combined.export(file_type=fmt))]  # type: ignore[call-arg]


def _glb(meshes, labels) -> bytes:
    scene = trimesh.Scene()
    scene.graph.update(
        frame_from=scene.graph.base_frame, frame_to=GLB_ROOT, matrix=GLTF_FROM_RAS_MM
    )
    for label_id, mesh in meshes.items():
        label = labels[label_id]
        scene.add_geometry(
            _with_material(mesh, label.name, label.colour),
            node_name=label.name,
            geom_name=label.name,
            parent_node_name=GLB_ROOT,
        )
    return scene.export(file_type="glb")


def _write_obj(meshes, labels, path: Path) -> list[Path]:
    scene = trimesh.Scene()
    for label_id, mesh in meshes.items():
        name = labels[label_id].name.replace(" ", "_")
        scene.add_geometry(
            _with_material(mesh, name, labels[label_id].colour), node_name=name, geom_name=name
        )
    mtl_path = path.with_suffix(".mtl")
    text, textures = trimesh.exchange.obj.export_obj(
        scene, include_texture=True, return_texture=True, mtl_name=mtl_path.name
    )
    written = [_write(path.parent / name, data) for name, data in textures.items()]
    return [_write(path, text.encode("utf-8")), *written]


def _with_material(mesh, name, colour) -> trimesh.Trimesh:
    copy = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    copy.visual = TextureVisuals(
        material=PBRMaterial(
            name=name, baseColorFactor=[*colour, 255], metallicFactor=0.0, roughnessFactor=0.6
        )
    )
    return copy


def _coloured(mesh, colour) -> trimesh.Trimesh:
    copy = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    copy.visual = ColorVisuals(copy, vertex_colors=np.tile([*colour, 255], (len(mesh.vertices), 1)))
    return copy


def _write(path: Path, data: bytes) -> Path:
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)
    return path
