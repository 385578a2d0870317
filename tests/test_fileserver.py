"""The output folder over HTTP: real requests (http.client, and ffmpeg seeking in an MP3) against a real server."""

from __future__ import annotations

import http.client
import os
import subprocess
from pathlib import Path

import pytest

from podforge.media.ffmpeg import ffmpeg_exe
from podforge.publishing.fileserver import FileServer, byte_range

DATA = bytes(range(256)) * 40  # 10,240 bytes, every offset distinguishable


@pytest.fixture
def served(tmp_path: Path):
    root = tmp_path / "output"
    (root / "show-one").mkdir(parents=True)
    (root / "show-one" / "episode.mp3").write_bytes(DATA)
    (root / "show-one" / "episode.vtt").write_text("WEBVTT\n", encoding="utf-8")
    (tmp_path / "secret.txt").write_text("outside the output folder", encoding="utf-8")
    os.symlink(tmp_path / "secret.txt", root / "show-one" / "link.txt")
    log = tmp_path / "files.log"
    server = FileServer(root, "127.0.0.1", 0, log=log).start()
    yield server, root, log
    server.stop()


def get(server: FileServer, path: str, method: str = "GET", **headers: str) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request(method, path, headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def test_a_whole_file_says_it_accepts_ranges(served):
    server, _, _ = served
    status, headers, body = get(server, "/show-one/episode.mp3")
    assert status == 200 and body == DATA
    assert headers["accept-ranges"] == "bytes" and headers["content-length"] == str(len(DATA))
    assert headers["content-type"] == "audio/mpeg"
    assert get(server, "/show-one/episode.vtt")[1]["content-type"] == "text/vtt"


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [("bytes=100-199", 100, 199), ("bytes=10000-", 10000, 10239), ("bytes=-40", 10200, 10239), ("bytes=10200-99999", 10200, 10239), ("bytes=0-0", 0, 0)],
)
def test_a_range_gets_206_and_exactly_those_bytes(served, header, first, last):
    server, _, _ = served
    status, headers, body = get(server, "/show-one/episode.mp3", Range=header)
    assert status == 206
    assert headers["content-range"] == f"bytes {first}-{last}/{len(DATA)}"
    assert body == DATA[first : last + 1] and headers["content-length"] == str(last - first + 1)


def test_a_range_past_the_end_is_416_with_the_size(served):
    server, _, _ = served
    status, headers, body = get(server, "/show-one/episode.mp3", Range="bytes=20000-")
    assert status == 416 and headers["content-range"] == f"bytes */{len(DATA)}" and body == b""


def test_several_ranges_or_a_stale_if_range_get_the_whole_file(served):
    server, _, _ = served
    assert get(server, "/show-one/episode.mp3", Range="bytes=0-1,5-6")[:1] == (200,)
    fresh = get(server, "/show-one/episode.mp3")[1]["last-modified"]
    assert get(server, "/show-one/episode.mp3", Range="bytes=0-9", **{"If-Range": fresh})[0] == 206
    status, _, body = get(server, "/show-one/episode.mp3", Range="bytes=0-9", **{"If-Range": "Mon, 01 Jan 2001 00:00:00 GMT"})
    assert status == 200 and body == DATA


def test_head_sends_the_headers_only(served):
    server, _, _ = served
    status, headers, body = get(server, "/show-one/episode.mp3", method="HEAD", Range="bytes=0-99")
    assert status == 206 and headers["content-length"] == "100" and body == b""


def test_nothing_outside_the_folder_is_served(served):
    server, _, _ = served
    assert get(server, "/show-one/link.txt")[0] == 404, "a symlink out of the folder"
    assert get(server, "/../secret.txt")[0] == 404
    assert get(server, "/show-one/%2e%2e/%2e%2e/secret.txt")[0] == 404
    assert get(server, "/missing.mp3")[0] == 404


def test_folders_are_listed(served):
    server, _, _ = served
    status, headers, _ = get(server, "/show-one")
    assert status == 301 and headers["location"] == "/show-one/"
    status, _, body = get(server, "/show-one/")
    assert status == 200 and b"episode.mp3" in body


def test_a_base_url_path_is_a_prefix(tmp_path: Path):
    (tmp_path / "a.mp3").write_bytes(DATA)
    server = FileServer(tmp_path, "127.0.0.1", 0, prefix="/podcast/").start()
    try:
        assert get(server, "/podcast/a.mp3", Range="bytes=1-2")[2] == DATA[1:3]
        assert get(server, "/a.mp3")[0] == 404
    finally:
        server.stop()


def test_ffmpeg_seeks_in_a_served_mp3_with_range_requests(tmp_path: Path):
    """A real HTTP media client: ffmpeg reads the MP3's end, then seeks, and the server answers 206."""
    mp3 = tmp_path / "tone.mp3"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=20", "-b:a", "64k", str(mp3)], check=True, timeout=120)
    log = tmp_path / "files.log"
    server = FileServer(tmp_path, "127.0.0.1", 0, log=log).start()
    try:
        decoded = subprocess.run(
            [ffmpeg_exe(), "-v", "error", "-ss", "15", "-i", f"http://127.0.0.1:{server.port}/tone.mp3", "-f", "wav", "-"],
            capture_output=True, check=True, timeout=120,
        )  # fmt: skip
    finally:
        server.stop()
    seconds = (len(decoded.stdout) - 44) / (44100 * 2)  # mono s16 WAV from 15 s to the end
    assert 4.0 < seconds < 6.0, seconds
    assert '" 206 ' in log.read_text(encoding="utf-8"), "ffmpeg's seek was answered with a partial response"


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [(None, 10, None), ("bytes=0-", 0, "unsatisfiable"), ("bytes=-0", 10, "unsatisfiable"), ("bytes=5-2", 10, None), ("items=0-1", 10, None), ("bytes=-", 10, None)],
)
def test_range_header_edge_cases(header, size, expected):
    assert byte_range(header, size) == expected
