"""Neuroglancer, offline: precomputed writer, first view, local server, static site
(a case folder's viewer: `cordmap.pipeline.view`)."""

from cordmap.viewer.precomputed import source_transform, write_precomputed
from cordmap.viewer.server import ViewerServer
from cordmap.viewer.site import Site, export_static
from cordmap.viewer.state import viewer_state

__all__ = [
    "Site",
    "ViewerServer",
    "export_static",
    "source_transform",
    "viewer_state",
    "write_precomputed",
]
