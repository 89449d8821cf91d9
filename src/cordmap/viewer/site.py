"""The viewer as a web site: Neuroglancer's bundled client, the case's data, an entry page.

URL layout (the same for `cordmap view` and for `--static DIR`):

    index.html            entry page: builds the state URL for wherever the site is hosted
    v/cordmap/...         the web client bundled in the `neuroglancer` wheel (offline)
    data/...              the precomputed dataset (CASE/viewer/)

The bundled client is Neuroglancer's Python-integration build: it reads its token from a
`/v/<token>/` path, takes the state from the URL hash, and keeps an event stream open to a
Python kernel for its configuration. A static site has no kernel, so the client's page
answers that stream locally (`CLIENT_SHIM`) instead of showing "Disconnected".
"""

from __future__ import annotations

import importlib.util
import json
import posixpath
import shutil
from pathlib import Path
from urllib.parse import unquote

from cordmap.atomic import atomic_dir
from cordmap.errors import CordmapError
from cordmap.viewer.folders import require_replaceable

CLIENT_PATH = "v/cordmap"
DATA_PATH = "data"

CLIENT_SHIM = """<link rel="icon" href="data:,">
<script>
/* cordmap: no Python kernel behind this page; open the client's state channel locally. */
(function () {
  const Native = window.EventSource;
  window.EventSource = function (url, options) {
    if (!String(url).includes("/events/")) return new Native(url, options);
    const stream = {readyState: 1, close() { this.readyState = 2; }};
    setTimeout(() => stream.onopen && stream.onopen(), 0);
    return stream;
  };
})();
</script>"""

ENTRY_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title><link rel="icon" href="data:,"></head>
<body>
<p>Opening the 3D viewer&hellip; (<a id="open" href="#">open it</a> if nothing happens)</p>
<script>
const state = {state};
const root = new URL(".", window.location.href);
for (const layer of state.layers) {{
  if (!layer.source.url.includes("://")) {{  // data paths; local:// annotations stay
    layer.source.url = "precomputed://" + new URL(layer.source.url, root).href;
  }}
}}
const target = new URL("{client}/", root).href + "#!" + encodeURIComponent(JSON.stringify(state));
document.getElementById("open").href = target;
window.location.replace(target);
</script>
</body></html>
"""


def client_dir() -> Path:
    """Folder of the Neuroglancer web client inside the installed `neuroglancer` wheel."""
    spec = importlib.util.find_spec("neuroglancer")  # locates the wheel without importing it
    folder = Path(spec.origin).parent / "static" / "client" if spec and spec.origin else None
    if folder is None or not (folder / "index.html").is_file():
        raise CordmapError(
            "the Neuroglancer web client is missing; reinstall it with "
            "`pip install -c constraints.txt 'cordmap[viewer]'`"
        )
    return folder


def client_page() -> bytes:
    """The client's index.html with `CLIENT_SHIM` loaded before the client's scripts."""
    html = (client_dir() / "index.html").read_text(encoding="utf-8")
    if "<head>" not in html:
        raise CordmapError(
            "the installed neuroglancer client has an unexpected index.html; reinstall neuroglancer"
        )
    return html.replace("<head>", "<head>" + CLIENT_SHIM, 1).encode()


def entry_page(state: dict, title: str = "cordmap viewer") -> bytes:
    """index.html that turns the state's relative data URLs absolute and opens the client."""
    state_json = json.dumps(state, separators=(",", ":")).replace("</", "<\\/")
    return ENTRY_PAGE.format(title=title, state=state_json, client=CLIENT_PATH).encode()


class Site:
    """Files of the viewer site by URL path; nothing outside the client and the data."""

    def __init__(self, data_dir: str | Path, state: dict, title: str = "cordmap viewer"):
        self.data_dir = Path(data_dir).resolve()
        self.client_dir = client_dir().resolve()
        entry, client = entry_page(state, title), client_page()
        self.pages = {
            "": entry,
            "index.html": entry,
            f"{CLIENT_PATH}/": client,
            f"{CLIENT_PATH}/index.html": client,
        }

    def lookup(self, url_path: str) -> bytes | Path | None:
        """Content (bytes) or file for a URL path; None when it is not part of the site.

        The path is percent-decoded, then refused if it climbs (`..`), holds a backslash or
        NUL, or resolves (through links) outside the client or data folder.
        """
        path = unquote(url_path.split("?", 1)[0].split("#", 1)[0]).lstrip("/")
        if "\\" in path or "\0" in path or ".." in path.split("/"):
            return None
        if path in self.pages:
            return self.pages[path]
        for prefix, root in (
            (CLIENT_PATH + "/", self.client_dir),
            (DATA_PATH + "/", self.data_dir),
        ):
            if path.startswith(prefix):
                return _inside(root, posixpath.normpath(path[len(prefix) :]))
        return None


def _inside(root: Path, relative: str) -> Path | None:
    if relative in ("", ".") or relative.startswith("/"):
        return None
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root) or not candidate.is_file():
        return None
    return candidate


def export_static(site: Site, out_dir: str | Path) -> Path:
    """Write the whole site (client + data + index.html) as a folder any web server can host."""
    out_dir = Path(out_dir)
    if out_dir.resolve().is_relative_to(site.data_dir):
        raise CordmapError(f"{out_dir} lies inside the case's viewer data; choose another folder")
    require_replaceable(out_dir, CLIENT_PATH + "/index.html", "a cordmap viewer site")
    with atomic_dir(out_dir) as tmp:
        client = tmp / CLIENT_PATH
        shutil.copytree(
            site.client_dir, client, ignore=shutil.ignore_patterns("*.map", "index.html")
        )
        shutil.copytree(site.data_dir, tmp / DATA_PATH)
        for path, content in site.pages.items():
            if path.endswith("index.html"):
                (tmp / path).write_bytes(content)
    return out_dir
