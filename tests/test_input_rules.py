"""The rules behind the pre-flight and the output folder, in-process: slugs, languages and writing systems,
limits, confined asset paths, who owns an episode folder, the publish swap and its recovery, temporary
files of killed processes, report escaping."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from podforge.config import load_config
from podforge.errors import ConfigError, OutputError, PodforgeError, ScriptError
from podforge.io import atomic_path, temp_marker, write_text_atomic
from podforge.output import check_destination
from podforge.preflight import check_limits, check_voices, resolve_portraits
from podforge.publish import restore_interrupted_swap, swap_in
from podforge.report import escape_markdown
from podforge.script import foreign_letters, load_script, parse_script, resolve_asset, slugify


def test_slugs_transliterate_every_script_and_never_collapse_to_one_name():
    assert slugify("显卡为什么空闲") == "xian-ka-wei-shen-me-kong-xian"
    assert slugify("لماذا تبقى وحدة معالجة الرسومات خاملة") != slugify("ما ثمن وحدة معالجة الرسومات")
    assert slugify("Привет, мир") == "privet-mir"
    assert slugify("GPU の値段") == "gpu-no-zhi-duan"
    assert slugify("Ça va? Épisode 3/4") == "ca-va-episode-3-4"
    assert slugify("???").startswith("episode-") and slugify("???") != slugify("!!!")
    long_a, long_b = "word " * 30 + "one", "word " * 30 + "two"
    assert len(slugify(long_a)) <= 64 and slugify(long_a) != slugify(long_b)


def test_errors_are_one_line_however_many_lines_their_details_have():
    error = PodforgeError("ffmpeg failed while muxing (exit 1):\n  [mp4 @ 0x1] header\n\n  out.mp4: No space left on device\n", file="ep", field="ffmpeg")
    assert error.one_line() == "ep: ffmpeg: ffmpeg failed while muxing (exit 1): … out.mp4: No space left on device"


def test_unknown_language_and_a_voice_that_cannot_speak_it_are_refused():
    with pytest.raises(ScriptError, match="unknown language 'xx'") as caught:
        parse_script("---\nlanguage: xx\n---\nA: hi\n", source="s.md")
    assert caught.value.field == "language"
    assert parse_script("---\nlanguage: en-GB\n---\nA: hi\n").meta.language == "en-GB"
    config = load_config()
    script = parse_script("---\nlanguage: de\n---\nA: Guten Tag.\n", source="s.md")
    with pytest.raises(ScriptError, match="A's voice 'joe' speaks en, not 'de'; voices that speak it: xtts-ana, xtts-damien") as caught:
        check_voices(script, config, [("A", "joe")])
    assert caught.value.field == "hosts.A.voice"
    assert check_voices(script, config, [("A", "xtts-ana")]) == []


def test_letters_a_voice_cannot_read_and_shared_voices_are_warnings():
    assert foreign_letters("Hello 你好, Привет, café, GPU", ["en"]) == {"Han": 2, "Cyrillic": 6}
    assert foreign_letters("你好 GPU", ["zh"]) == {}
    assert foreign_letters("こんにちは 世界", ["ja"]) == {}
    config = load_config()
    script = parse_script("".join(f"H{i}: Hello number {i}.\n" for i in range(5)) + "H0: 你好 means hello\n", source="s.md")
    warnings = check_voices(script, config, [(f"H{i}", "joe" if i % 2 == 0 else "joe-bright") for i in range(5)])
    assert "3 hosts share voice 'joe': H0, H2, H4 (5 hosts, 2 voices; give each host its own `voice:`)" in warnings
    assert "2 hosts share voice 'joe-bright': H1, H3 (5 hosts, 2 voices; give each host its own `voice:`)" in warnings
    assert "line 6 (H0): 2 Han letters, which voice 'joe' (en) cannot read" in warnings
    unreadable = parse_script("H0: Hello.\nH1: 你好，今天我们谈谈显卡。\n", source="s.md")
    with pytest.raises(ScriptError, match=r"H1's line has only 10 Han letters, which voice 'heart' \(en\) cannot read") as refused:
        check_voices(unreadable, config, [("H0", "joe"), ("H1", "heart")])
    assert (refused.value.file, refused.value.field) == ("s.md", "line 2")


def test_limits_come_from_the_config_and_name_the_line():
    limits = load_config(overrides={"limits": {"max_lines": 3, "max_line_chars": 40, "max_episode_minutes": 0.05}}).limits
    check_limits(parse_script("A: one\nB: two\n", source="s.md"), limits)
    with pytest.raises(ScriptError, match="4 spoken lines; an episode may have at most 3") as caught:
        check_limits(parse_script("A: 1\nA: 2\nA: 3\nA: 4\n", source="s.md"), limits)
    assert caught.value.field == "body"
    with pytest.raises(ScriptError, match="A's line is 45 characters; at most 40") as caught:
        check_limits(parse_script("A: short\nA: " + "x" * 45 + "\n", source="s.md"), limits)
    assert caught.value.field == "line 2"
    with pytest.raises(ScriptError, match=r"about 0.1 minutes of speech \(22 words at 150 a minute\); at most 0.05"):
        check_limits(parse_script("A: " + "word " * 7 + "\nB: " + "word " * 7 + "\nA: 你好世界大家好\n", source="s.md"), limits.model_copy(update={"max_line_chars": 100}))


def test_an_engine_name_that_is_not_a_string_is_an_unknown_engine(tmp_path):
    config = tmp_path / "studio.yaml"
    config.write_text("use: {music: off}\n")  # YAML reads a bare off as false
    with pytest.raises(ConfigError, match="unknown engine False; known engines: .*procedural") as caught:
        load_config([config])
    assert caught.value.field == "use.music" and caught.value.file == str(config)


def test_named_files_stay_inside_the_script_folder_or_the_assets_folder(tmp_path):
    show, assets, elsewhere = tmp_path / "show", tmp_path / "assets", tmp_path / "elsewhere"
    for folder in (show, assets, elsewhere):
        folder.mkdir()
    (show / "alex.jpg").write_bytes(b"a")
    (assets / "sam.jpg").write_bytes(b"s")
    (elsewhere / "secret.jpg").write_bytes(b"x")
    (show / "inside-link.jpg").symlink_to(assets / "sam.jpg")
    (show / "outside-link.jpg").symlink_to(elsewhere / "secret.jpg")
    (show / "linked-folder").symlink_to(elsewhere)
    roots = [show, assets]
    resolve = lambda written: resolve_asset(Path(written), roots, source="s.md", field="hosts.A.portrait")  # noqa: E731
    assert resolve("alex.jpg") == (show / "alex.jpg").resolve()
    assert resolve("sam.jpg") == (assets / "sam.jpg").resolve()
    assert resolve("inside-link.jpg") == (assets / "sam.jpg").resolve()
    for written, message in [
        (str(elsewhere / "secret.jpg"), "absolute path"),
        ("../elsewhere/secret.jpg", "'..'"),
        ("outside-link.jpg", "is a link to"),
        ("linked-folder/secret.jpg", "is a link to"),
        ("missing.jpg", "does not exist in"),
    ]:
        with pytest.raises(ScriptError, match=message) as caught:
            resolve(written)
        assert caught.value.field == "hosts.A.portrait" and caught.value.file == "s.md"


def test_inline_scripts_read_portraits_from_the_assets_folder(tmp_path):
    (tmp_path / "alex.jpg").write_bytes(b"a")
    script = parse_script("---\nhosts: {ALEX: {portrait: alex.jpg}}\n---\nALEX: hi\n", source="script_text")
    with pytest.raises(ScriptError, match="inline text has no folder: set assets_dir"):
        resolve_portraits(script, load_config())
    assert resolve_portraits(script, load_config(overrides={"assets_dir": str(tmp_path)})) == {"ALEX": (tmp_path / "alex.jpg").resolve()}
    on_disk = tmp_path / "script.md"
    on_disk.write_text("---\nhosts: {ALEX: {portrait: alex.jpg}}\n---\nALEX: hi\n")
    assert resolve_portraits(load_script(on_disk), load_config()) == {"ALEX": (tmp_path / "alex.jpg").resolve()}


def published(folder: Path, title: str, sha: str, source: str, show: str = "Show") -> None:
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"title": title, "show": show, "script_sha256": sha, "script_source": source}))


def test_an_episode_folder_belongs_to_its_episode_and_never_to_a_show(tmp_path):
    out = tmp_path / "out"
    script = parse_script("---\ntitle: Pilot\nshow: Show\n---\nA: hi\n", source=str(tmp_path / "pilot.md"))
    assert check_destination(out, script) == (out / "pilot").resolve() and not out.exists(), "the check writes nothing"
    published(out / "pilot", "Pilot", "other content", str(tmp_path / "pilot.md"))
    check_destination(out, script)  # the same script file, edited
    edited_elsewhere = script.model_copy(update={"source": "moved.md"})
    check_destination(out, edited_elsewhere)  # same title and show
    other = parse_script("---\ntitle: Pilot!\nslug: pilot\nshow: Show\n---\nB: other\n", source="other.md")
    with pytest.raises(OutputError, match="already holds another episode, 'Pilot' from") as caught:
        check_destination(out, other)
    assert caught.value.field == "slug"
    same_as_show = parse_script("---\ntitle: Show\nshow: Show\n---\nA: hi\n", source="s.md")
    with pytest.raises(OutputError, match="also its show's folder"):
        check_destination(out, same_as_show)
    (out / "stranger").mkdir()
    (out / "stranger" / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="not a Podforge episode"):
        check_destination(out, parse_script("---\ntitle: Stranger\n---\nA: hi\n", source="s.md"))


def episode_folder(path: Path, content: str) -> Path:
    path.mkdir()
    (path / "episode.mp3").write_text(content)
    (path / "manifest.json").write_text(content)
    return path


def contents(path: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in path.iterdir()}


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2-exchange", "two-renames"])
def test_swap_in_replaces_a_folder_whole(tmp_path, monkeypatch, exchange):
    if not exchange:
        monkeypatch.setenv("PODFORGE_NO_RENAME_EXCHANGE", "1")
    target = episode_folder(tmp_path / "ep", "old")
    staging = episode_folder(tmp_path / ".ep.staging", "new")
    swap_in(staging, target)
    assert contents(target) == {"episode.mp3": "new", "manifest.json": "new"}
    assert not (tmp_path / ".ep.previous").exists()
    if exchange:
        assert contents(staging) == {"episode.mp3": "old", "manifest.json": "old"}, "the exchange leaves the earlier folder at the staging path"
    else:
        assert not staging.exists()


def test_an_interrupted_two_rename_swap_is_undone_by_the_next_publish(tmp_path):
    target = tmp_path / "ep"
    aside = episode_folder(tmp_path / ".ep.previous", "old")  # killed after the first rename
    restore_interrupted_swap(target)
    assert contents(target) == {"episode.mp3": "old", "manifest.json": "old"} and not aside.exists()
    episode_folder(aside, "old")  # killed after the second rename, before the cleanup
    restore_interrupted_swap(target)
    assert contents(target) == {"episode.mp3": "old", "manifest.json": "old"} and not aside.exists()


def test_temporary_files_of_killed_processes_are_removed_by_the_next_write(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan = tmp_path / f".speech{temp_marker().replace(str(os.getpid()), str(dead.pid))}abc.wav"
    orphan.write_bytes(b"half a file")
    orphan_folder = tmp_path / f".ep{temp_marker().replace(str(os.getpid()), str(dead.pid))}xyz"
    orphan_folder.mkdir()
    mine = tmp_path / f".other{temp_marker()}live.wav"  # a live process's temporary file stays
    mine.write_bytes(b"in progress")
    write_text_atomic(tmp_path / "speech.txt", "done")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["speech.txt", mine.name])
    with pytest.raises(OSError), atomic_path(tmp_path / "empty.txt"):
        pass  # nothing written: refused, and its temporary file removed
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["speech.txt", mine.name])


def test_report_text_from_the_script_is_escaped():
    escaped = escape_markdown("<script>alert('x')</script> **bold** [link](http://x) & {\\pos(1,1)}\n# heading")
    assert "<" not in escaped and ">" not in escaped
    assert escaped == "&lt;script&gt;alert\\('x'\\)&lt;/script&gt; \\*\\*bold\\*\\* \\[link\\]\\(http://x\\) &amp; \\{\\\\pos\\(1,1\\)\\} \\# heading"
