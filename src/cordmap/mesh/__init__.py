"""Meshes of every labelled structure, and their export to 3D tools (GLB, PLY, STL, OBJ)."""

from cordmap.interrupts import import_keeping_interrupts

import_keeping_interrupts("trimesh")  # its import swallows Ctrl-C (except BaseException)

from cordmap.mesh.exports import FORMATS, export_meshes
from cordmap.mesh.files import MeshResult, mesh_label_file, parse_formats, read_meshes
from cordmap.mesh.surfaces import MeshStats, march_labels, mesh_labels, mesh_stats

__all__ = [
    "FORMATS",
    "MeshResult",
    "MeshStats",
    "export_meshes",
    "march_labels",
    "mesh_label_file",
    "mesh_labels",
    "mesh_stats",
    "parse_formats",
    "read_meshes",
]
