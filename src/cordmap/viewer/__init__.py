"""The case in Neuroglancer, offline: precomputed writer, first view, local server, static site."""

from cordmap.viewer.case_viewer import build_case_viewer, export_case, serve_case
from cordmap.viewer.precomputed import source_transform, write_precomputed
from cordmap.viewer.server import ViewerServer
from cordmap.viewer.site import Site, export_static
from cordmap.viewer.state import viewer_state

__all__ = [
    "Site",
    "ViewerServer",
    "build_case_viewer",
    "export_case",
    "export_static",
    "serve_case",
    "source_transform",
    "viewer_state",
    "write_precomputed",
]
