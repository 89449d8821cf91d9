"""A small local web server for a viewer `Site`: 127.0.0.1, GET/HEAD, Range requests.

It serves only what the site names (the bundled client and the case's data); every other
path, including any attempt to climb out of those folders, is answered 404. Requests must
name this machine in their Host header (localhost, 127.0.0.1, [::1] or the bound address),
so that a web page elsewhere cannot read the case through a name that resolves here (DNS
rebinding): others are answered 403. An idle connection is closed after IDLE_TIMEOUT_S.
A Range header that is malformed or asks for several ranges is ignored (the whole file,
200), as RFC 9110 allows; a single range beyond the file is answered 416.
"""

from __future__ import annotations

import errno
import re
import threading
from collections import deque
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cordmap.errors import CordmapError
from cordmap.viewer.site import Site

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "application/javascript",
    ".css": "text/css",
    ".wasm": "application/wasm",
    ".map": "application/json",
    ".json": "application/json",
}
RANGE = re.compile(r"^bytes=(\d{0,18})-(\d{0,18})$")
IDLE_TIMEOUT_S = 10
#: Paths answered 404 that are kept for diagnosis (the most recent, each cut to 200 chars).
NOT_FOUND_KEPT = 20


class ViewerServer(ThreadingHTTPServer):
    """Serves `site` on `host`:`port` (port None or 0: a free one)."""

    daemon_threads = True

    def __init__(self, site: Site, port: int | None = None, host: str = "127.0.0.1"):
        self.site = site
        self.not_found: deque[str] = deque(maxlen=NOT_FOUND_KEPT)  # recent 404s, for diagnosis
        if port is not None and not 0 <= port <= 65535:
            raise CordmapError(f"port {port} is not a TCP port; pass `port` between 1024 and 65535")
        try:
            super().__init__((host, port or 0), _Handler)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise CordmapError(
                    f"port {port} on {host} is already in use by another program; pass "
                    "another `port`, or leave `port` out to use a free one"
                ) from None
            raise CordmapError(
                f"cannot serve the viewer on {host}:{port} ({exc.strerror})"
            ) from None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        if isinstance(host, (bytes, bytearray)):  # typeshed allows it; AF_INET gives str
            host = host.decode()
        return f"http://{host}:{port}/"

    def start(self) -> threading.Thread:
        """Serve in a background thread (for tests and embedding); stop with `stop()`."""
        thread = threading.Thread(target=self.serve_forever, name="cordmap-viewer", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def serve_until_interrupted(self) -> None:
        """Serve in this thread until Ctrl-C, then close the socket."""
        try:
            self.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: ViewerServer
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT_S

    def do_GET(self):
        self._answer(send_body=True)

    def do_HEAD(self):
        self._answer(send_body=False)

    def log_message(self, format, *args):  # quiet: the CLI prints the URL, not each request
        pass

    def _answer(self, send_body: bool) -> None:
        if not self._host_allowed():
            self._send(HTTPStatus.FORBIDDEN, b"forbidden\n", "text/plain", send_body)
            return
        try:
            found = self.server.site.lookup(self.path)
        except (OSError, ValueError):  # a name too long for the file system, say
            found = None
        if found is None:
            self.server.not_found.append(self.path[:200])
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain", send_body)
            return
        if isinstance(found, Path):
            body, kind = found.read_bytes(), _content_type(found)
        else:
            body, kind = found, "text/html; charset=utf-8"
        wanted = self.headers.get("Range")
        if wanted is None or not RANGE.match(wanted.strip()):  # none, malformed or several
            self._send(HTTPStatus.OK, body, kind, send_body)
            return
        span = _byte_range(wanted, len(body))
        if span is None:
            self._send(
                HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE,
                b"",
                kind,
                send_body,
                {"Content-Range": f"bytes */{len(body)}"},
            )
            return
        start, end = span
        self._send(
            HTTPStatus.PARTIAL_CONTENT,
            body[start : end + 1],
            kind,
            send_body,
            {"Content-Range": f"bytes {start}-{end}/{len(body)}"},
        )

    def _host_allowed(self) -> bool:
        host = (self.headers.get("Host") or "").strip().lower()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        bound = str(self.server.server_address[0]).lower()
        return name in ("localhost", "127.0.0.1", "[::1]", bound, f"[{bound}]")

    def _send(self, status, body: bytes, kind: str, send_body: bool, headers=None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Cache-Control", "no-cache")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if send_body:
            self.wfile.write(body)


def _byte_range(header: str, size: int) -> tuple[int, int] | None:
    """Inclusive (start, end) of a single `bytes=` range, or None if unsatisfiable."""
    match = RANGE.match(header.strip())
    if not match or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if first == "":  # suffix range: the last N bytes
        start, end = max(size - int(last), 0), size - 1
    else:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    return (start, end) if start <= end and start < size else None


def _content_type(path: Path) -> str:
    if path.name == "info":
        return "application/json"
    return CONTENT_TYPES.get(path.suffix, "application/octet-stream")
