"""The output folder over HTTP with byte ranges: what ``podforge serve`` runs at ``publish.base_url``.

Podcast apps and browsers seek in MP3 and MP4 files with ``Range: bytes=…`` requests and expect ``206
Partial Content``; Python's ``http.server`` ignores ranges. This handler answers one range per request
(``bytes=a-b``, ``bytes=a-``, ``bytes=-n``), ``If-Range`` against the file's ``Last-Modified``, HEAD, and
``416`` for a range that starts past the end. Several ranges in one request get the whole file, which
RFC 9110 allows. Only files inside the served folder are served: a path or symlink that leads outside it
is a 404.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from email.utils import formatdate
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
MEDIA_TYPES = {
    ".mp3": "audio/mpeg",
    ".mp4": "video/mp4",
    ".wav": "audio/wav",
    ".vtt": "text/vtt",
    ".srt": "application/x-subrip",
    ".json": "application/json",
    ".xml": "application/rss+xml",
    ".md": "text/markdown; charset=utf-8",
}


def byte_range(header: str | None, size: int) -> tuple[int, int] | None | str:
    """The inclusive ``(first, last)`` byte range a ``Range`` header asks of a ``size``-byte file.

    ``None``: serve the whole file (no header, several ranges, or a header this server ignores, as RFC
    9110 allows). ``"unsatisfiable"``: the range starts past the end (or asks for zero bytes).
    """
    match = RANGE.match((header or "").replace(" ", ""))
    if not match or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if first == "":  # the last N bytes
        suffix = int(last)
        return (max(0, size - suffix), size - 1) if suffix and size else "unsatisfiable"
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size:
        return "unsatisfiable"
    return None if end < start else (start, end)


class RangeRequestHandler(SimpleHTTPRequestHandler):
    """``SimpleHTTPRequestHandler`` with byte ranges, a URL path prefix and confinement to its folder."""

    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, **MEDIA_TYPES}

    def __init__(self, *args, directory: str, prefix: str = "/", log: Path | None = None, **kwargs):
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        self.log_path = log
        super().__init__(*args, directory=directory, **kwargs)

    def do_GET(self) -> None:
        self._respond(send_body=True)

    def do_HEAD(self) -> None:
        self._respond(send_body=False)

    def _respond(self, *, send_body: bool) -> None:
        path = self._local_path()
        if path is None:
            self.send_error(HTTPStatus.NOT_FOUND, "File not found")
            return
        if path.is_dir():
            self._list_folder(path, send_body=send_body)
            return
        with open(path, "rb") as body:
            size = os.fstat(body.fileno()).st_size
            last_modified = formatdate(os.fstat(body.fileno()).st_mtime, usegmt=True)
            wanted = byte_range(self.headers.get("Range"), size)
            if_range = self.headers.get("If-Range")
            if wanted is not None and if_range is not None and if_range != last_modified:
                wanted = None  # the client's copy is stale: send the whole, current file
            if wanted == "unsatisfiable":
                self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            first, last = wanted if isinstance(wanted, tuple) else (0, size - 1)
            self.send_response(HTTPStatus.PARTIAL_CONTENT if isinstance(wanted, tuple) else HTTPStatus.OK)
            if isinstance(wanted, tuple):
                self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
            self.send_header("Content-Type", self.guess_type(str(path)))
            self.send_header("Content-Length", str(last - first + 1 if size else 0))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Last-Modified", last_modified)
            self.end_headers()
            if send_body and size:
                copy_bytes(body, self.wfile, first, last - first + 1)

    def _list_folder(self, path: Path, *, send_body: bool) -> None:
        url = urlsplit(self.path)
        if not url.path.endswith("/"):
            self.send_response(HTTPStatus.MOVED_PERMANENTLY)
            self.send_header("Location", url.path + "/" + (f"?{url.query}" if url.query else ""))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        listing = self.list_directory(str(path))  # sends the headers
        if listing:
            with listing:
                if send_body:
                    shutil.copyfileobj(listing, self.wfile)

    def _local_path(self) -> Path | None:
        """The file or folder the URL names, or None when it is outside the prefix or the served folder."""
        url_path = unquote(urlsplit(self.path).path)
        if not (url_path + "/").startswith(self.prefix):
            return None
        root = Path(self.directory).resolve()
        path = (root / url_path[len(self.prefix) :].lstrip("/")).resolve()
        if path != root and root not in path.parents:
            return None
        return path if path.exists() else None

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the name http.server uses
        if self.log_path:
            with open(self.log_path, "a", encoding="utf-8") as log:
                log.write(f"{self.log_date_time_string()} {self.address_string()} {format % args}\n")


def copy_bytes(source: BinaryIO, target: BinaryIO, offset: int, length: int, chunk: int = 256 * 1024) -> None:
    source.seek(offset)
    while length > 0:
        data = source.read(min(chunk, length))
        if not data:
            break
        target.write(data)
        length -= len(data)


class FileServer:
    """A threaded HTTP server for one folder, running in a daemon thread of this process."""

    def __init__(self, directory: Path, host: str, port: int, prefix: str = "/", log: Path | None = None):
        handler = partial(RangeRequestHandler, directory=str(directory), prefix=prefix, log=log)
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="podforge-files", daemon=True)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def start(self) -> FileServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
