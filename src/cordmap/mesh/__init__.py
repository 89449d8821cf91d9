"""Meshes of every labelled structure, and their export to 3D tools (GLB, PLY, STL, OBJ)."""

from cordmap.mesh.exports import FORMATS, export_meshes
from cordmap.mesh.surfaces import MeshStats, mesh_labels, mesh_stats

__all__ = ["FORMATS", "MeshStats", "export_meshes", "mesh_labels", "mesh_stats"]
