"""ID3v2.3 tags, cover art and chapters in the episode MP3, read back with mutagen."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mutagen.id3 import ID3
from mutagen.mp3 import MP3
from PIL import Image

from podforge.errors import EngineError
from podforge.media.ffmpeg import run_ffmpeg
from podforge.publishing.chapters import ChapterMark, chapters_json, marks_from_starts, write_chapters_json
from podforge.publishing.id3 import tag_episode_mp3


@pytest.fixture(scope="module")
def untagged_mp3(tmp_path_factory) -> Path:
    """A real 4-second MP3 made by ffmpeg (which writes its own ID3v2.4 tag with an encoder frame)."""
    path = tmp_path_factory.mktemp("mp3") / "episode.mp3"
    sine = ["-f", "lavfi", "-i", "sine=frequency=440:duration=4"]
    run_ffmpeg([*sine, "-c:a", "libmp3lame", "-b:a", "64k", "-metadata", "title=ffmpeg title", str(path)], what="making a test MP3")
    return path


@pytest.fixture
def mp3(untagged_mp3: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "episode.mp3"
    copy.write_bytes(untagged_mp3.read_bytes())
    return copy


@pytest.fixture
def cover_png(tmp_path: Path) -> Path:
    path = tmp_path / "cover.png"
    Image.new("RGB", (1400, 1400), (20, 90, 120)).save(path)
    return path


CHAPTERS = [
    ChapterMark(title="Cold open", start_s=0.0, end_s=1.25),
    ChapterMark(title="Les GPU coûtent cher", start_s=1.25, end_s=4.0),
]


def test_tags_chapters_and_cover_read_back(mp3: Path, cover_png: Path):
    audio_before = MP3(mp3).info.length
    tag_episode_mp3(
        mp3, title="GPUs Are Expensive", show="Podforge Demo", description="Why the bill is high.", chapters=CHAPTERS, cover_png=cover_png, year=2025
    )

    assert mp3.read_bytes()[:4] == b"ID3\x03", "the tag must be written as ID3v2.3"
    tags = ID3(mp3)
    assert tags.version == (2, 3, 0)
    assert tags["TIT2"].text == ["GPUs Are Expensive"]
    assert tags["TALB"].text == ["Podforge Demo"]
    assert tags["TPE1"].text == ["Podforge Demo"]
    assert tags["TCON"].text == ["Podcast"]
    assert tags["TLAN"].text == ["eng"]
    assert tags.getall("COMM")[0].text == ["Why the bill is high."]
    assert str(tags["TDRC"].text[0]) == "2025"

    (cover,) = tags.getall("APIC")
    assert cover.type == 3 and cover.mime == "image/png"
    assert cover.data == cover_png.read_bytes()

    (toc,) = tags.getall("CTOC")
    assert toc.flags == 3  # top-level | ordered
    assert toc.child_element_ids == ["chp0", "chp1"]
    chaps = sorted(tags.getall("CHAP"), key=lambda frame: frame.start_time)
    assert [(c.element_id, c.start_time, c.end_time, c.sub_frames["TIT2"].text[0]) for c in chaps] == [
        ("chp0", 0, 1250, "Cold open"),
        ("chp1", 1250, 4000, "Les GPU coûtent cher"),
    ]
    assert MP3(mp3).info.length == pytest.approx(audio_before), "tagging must not touch the audio"


def test_retagging_replaces_the_tag(mp3: Path, cover_png: Path):
    tag_episode_mp3(mp3, title="First", show="Show", chapters=CHAPTERS, cover_png=cover_png)
    tag_episode_mp3(mp3, title="Second", show="Show")
    tags = ID3(mp3)
    assert tags["TIT2"].text == ["Second"]
    assert not tags.getall("CHAP") and not tags.getall("CTOC") and not tags.getall("APIC")
    assert not [p for p in mp3.parent.iterdir() if p.name.startswith(".")], "no temporary file is left behind"


def test_jpeg_cover_gets_jpeg_mime(mp3: Path, tmp_path: Path):
    jpeg = tmp_path / "cover.jpg"
    Image.new("RGB", (1400, 1400), "orange").save(jpeg, format="JPEG")
    tag_episode_mp3(mp3, title="T", show="S", cover_png=jpeg)
    assert ID3(mp3).getall("APIC")[0].mime == "image/jpeg"


def test_bad_cover_and_missing_mp3_are_named(mp3: Path, tmp_path: Path):
    gif = tmp_path / "cover.gif"
    Image.new("RGB", (64, 64)).save(gif, format="GIF")
    original = mp3.read_bytes()
    with pytest.raises(EngineError, match="PNG or JPEG") as error:
        tag_episode_mp3(mp3, title="T", show="S", cover_png=gif)
    assert error.value.file == str(gif)
    assert mp3.read_bytes() == original, "a failed tagging leaves the MP3 untouched"
    with pytest.raises(EngineError, match="no such MP3"):
        tag_episode_mp3(tmp_path / "missing.mp3", title="T", show="S")


def test_chapters_json_is_podcasting_2_format(tmp_path: Path):
    path = write_chapters_json(tmp_path / "chapters.json", CHAPTERS, title="GPUs", podcast_name="Podforge Demo")
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["version"] == "1.2.0"
    assert document["podcastName"] == "Podforge Demo"
    assert document["chapters"] == [
        {"startTime": 0.0, "endTime": 1.25, "title": "Cold open"},
        {"startTime": 1.25, "endTime": 4.0, "title": "Les GPU coûtent cher"},
    ]
    assert json.loads(chapters_json([]))["chapters"] == []


def test_marks_from_starts_cover_the_whole_episode():
    marks = marks_from_starts([("Intro", 4.2), ("Middle", 30.0), ("End", 61.5)], duration_s=70.0)
    assert [(m.title, m.start_s, m.end_s) for m in marks] == [("Intro", 0.0, 30.0), ("Middle", 30.0, 61.5), ("End", 61.5, 70.0)]
    with pytest.raises(ValueError, match="increase"):
        marks_from_starts([("A", 0.0), ("B", 80.0)], duration_s=70.0)
    with pytest.raises(ValueError, match="not after its start"):
        ChapterMark(title="x", start_s=5, end_s=5)
