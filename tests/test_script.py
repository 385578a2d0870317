"""The script format: front matter, speakers, chapters, and the errors a show runner sees."""

from __future__ import annotations

from pathlib import Path

import pytest

from podforge.errors import ScriptError
from podforge.script import load_script, parse_script, slugify

DEMO = Path(__file__).resolve().parent.parent / "configs" / "episodes" / "demo.md"


def test_demo_script_is_a_two_host_episode_with_chapters():
    script = load_script(DEMO)
    assert script.speakers == ["ALEX", "SAM"]
    assert script.meta.hosts["SAM"].voice == "heart"  # two real voices: Piper joe and hibari heart
    assert [c.title for c in script.chapters] == ["Cold open", "What a GPU costs", "The idle GPU", "How this episode was made"]
    assert script.slug == "demo-why-your-gpu-sits-idle"
    words = sum(len(line.text.split()) for line in script.lines)
    assert 250 <= words <= 400  # about two minutes of speech


def test_lines_chapters_and_continuations():
    script = parse_script(
        "---\ntitle: T\nhosts:\n  ann: {voice: joe}\n  BOB: {}\n---\n"
        "ANN: Hello there.\n  and more of the same line\n\n## Part two\nbob: Second line.\n"
    )
    assert [(line.speaker, line.text, line.chapter) for line in script.lines] == [
        ("ann", "Hello there. and more of the same line", 0),
        ("BOB", "Second line.", 1),
    ]
    assert [(c.title, c.first_line) for c in script.chapters] == [("Intro", 0), ("Part two", 1)]


def test_a_body_without_speaker_tags_is_one_host_one_paragraph_per_line():
    script = parse_script("# My notes\nFirst paragraph\ncontinues here.\n\nSecond paragraph.\n")
    assert script.speakers == ["HOST"]
    assert [line.text for line in script.lines] == ["First paragraph continues here.", "Second paragraph."]


def test_speakers_without_front_matter_become_hosts():
    script = parse_script("alex: one\nsam: two\n")
    assert script.speakers == ["ALEX", "SAM"]
    assert set(script.meta.hosts) == {"ALEX", "SAM"}


@pytest.mark.parametrize(
    ("content", "field", "message"),
    [
        (b"", None, "empty"),
        (b"   \n\t\n", None, "empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", None, "binary"),
        ("caf\u00e9: latin-1".encode("latin-1"), None, "not UTF-8"),
        (b"---\ntitle: [unclosed\n---\nA: hi\n", "front matter", "malformed YAML"),
        (b"---\ntitle: x\n", "front matter", "no closing"),
        (b"---\n- a list\n---\nA: hi\n", "front matter", "mapping"),
        (b"---\nhosts: {ALEX: {voice: joe}}\n---\nALEX: hi\nZED: who?\n", "line 5", "unknown speaker 'ZED'"),
        (b"---\ntitle: only front matter\n---\n\n## A heading\n", "body", "no spoken lines"),
        (b"---\nslug: ../../etc\n---\nA: hi\n", "slug", "lowercase letters"),
        (b"---\nslug: a/b\n---\nA: hi\n", "slug", "lowercase letters"),
        (b"---\nslug: 'x; rm -rf ~'\n---\nA: hi\n", "slug", "lowercase letters"),
        (b"---\ncolour: blue\n---\nA: hi\n", "colour", "Extra inputs"),
        (b"---\nhosts: {ALEX: {voice: joe}}\n---\nALEX: hi\nno tag here\n\nstray text\n", "line 7", "without a speaker tag"),
    ],
)
def test_bad_scripts_name_the_file_and_field(tmp_path, content, field, message):
    path = tmp_path / "bad.md"
    path.write_bytes(content)
    with pytest.raises(ScriptError) as caught:
        load_script(path)
    assert caught.value.file == str(path)
    assert caught.value.field == field
    assert message in caught.value.message
    assert caught.value.one_line().startswith(str(path))


def test_titles_with_path_tricks_give_a_safe_slug():
    script = parse_script("---\ntitle: '../../etc/passwd; rm -rf $HOME'\n---\nA: hi\n")
    assert script.slug == "etc-passwd-rm-rf-home"
    assert slugify("..").startswith("episode-") and slugify("..") != slugify("...")
    assert slugify("Ça va? Épisode 3/4") == "ca-va-episode-3-4"


def test_speech_names_a_voice_or_an_engine_for_every_host():
    from podforge.config import load_config
    from podforge.errors import ConfigError

    config = load_config(overrides={"speech": "joe-deep"})
    assert [config.voice_for("A", "joe", i, "s.md")[0] for i in range(2)] == ["joe-deep", "joe-deep"]
    config = load_config(overrides={"speech": "coqui"})
    coqui_voices = [name for name, voice in config.voices.items() if voice.engine == "coqui"]
    assert [config.voice_for("A", None, i, "s.md")[0] for i in range(2)] == coqui_voices[:2]
    config = load_config(overrides={"speech": "coqui", "default_voices": ["joe", "vits-tiny-local"]})
    assert [config.voice_for("A", None, i, "s.md")[0] for i in range(2)] == ["vits-tiny-local", "vits-tiny-local"]
    with pytest.raises(ConfigError, match="neither a voice preset nor a speech engine"):
        load_config(overrides={"speech": "nobody"}).voice_for("A", None, 0, "s.md")
