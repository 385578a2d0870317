"""The show's RSS feed, parsed with feedparser (and ElementTree for the Podcasting 2.0 tags)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser
import pytest
from PIL import Image

from podforge.errors import ConfigError
from podforge.publishing.chapters import ChapterMark, write_chapters_json
from podforge.publishing.feed import NAMESPACES, FeedEpisode, ShowInfo, episode_guid, podcast_guid, update_feed

BASE_URL = "https://cdn.example.org/pods/"
T0 = datetime(2025, 3, 1, 2, 0, tzinfo=UTC)


@pytest.fixture
def output(tmp_path: Path) -> Path:
    return tmp_path / "output"


@pytest.fixture
def show(tmp_path: Path) -> ShowInfo:
    cover = tmp_path / "art.png"
    Image.new("RGB", (1400, 1400), (200, 60, 40)).save(cover)
    return ShowInfo(title="Podforge Demo", description="AI podcasts, made offline.", author="Podforge", base_url=BASE_URL, cover=cover, category="Technology")


def published_episode(output: Path, slug: str, *, title: str, mp3_bytes: int = 5000, when: datetime = T0) -> FeedEpisode:
    """The files the publish step leaves in ``output/<slug>/`` (content need not be real audio here)."""
    folder = output / slug
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "episode.mp3").write_bytes(b"\xff" * mp3_bytes)
    (folder / "episode.vtt").write_text("WEBVTT\n\n00:00.000 --> 00:01.000\nHello\n", encoding="utf-8")
    write_chapters_json(folder / "chapters.json", [ChapterMark(title="Intro", start_s=0, end_s=61)])
    Image.new("RGB", (1400, 1400), "navy").save(folder / "cover.png")
    return FeedEpisode(
        slug=slug,
        title=title,
        description=f"About {title}.",
        mp3=folder / "episode.mp3",
        duration_s=3723.4,
        published=when,
        image=folder / "cover.png",
        chapters_json=folder / "chapters.json",
        transcript_vtt=folder / "episode.vtt",
    )


def test_feed_has_what_podcast_apps_need(output: Path, show: ShowInfo):
    episode = published_episode(output, "gpus-are-expensive", title="GPUs Are Expensive")
    feed_path = update_feed(output / show.slug, show, episode)
    assert feed_path == (output / "podforge-demo" / "feed.xml").resolve()

    parsed = feedparser.parse(feed_path.read_bytes())
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert parsed.version == "rss20"
    channel = parsed.feed
    assert channel.title == "Podforge Demo"
    assert channel.language == "en"
    assert channel.author == "Podforge"
    assert channel.image.href == BASE_URL + "podforge-demo/cover.png"
    assert (output / "podforge-demo" / "cover.png").is_file()
    assert channel.tags[0].term == "Technology"
    assert channel.itunes_type == "episodic"

    (entry,) = parsed.entries
    (enclosure,) = entry.enclosures
    assert enclosure.href == BASE_URL + "gpus-are-expensive/episode.mp3"
    assert enclosure.length == "5000"
    assert enclosure.type == "audio/mpeg"
    assert entry.id == episode_guid("podforge-demo", "gpus-are-expensive")
    assert entry.guidislink is False
    assert entry.itunes_duration == "01:02:03"
    assert entry.image.href == BASE_URL + "gpus-are-expensive/cover.png"
    assert datetime(*entry.published_parsed[:6], tzinfo=UTC) == T0

    root = ET.parse(feed_path).getroot()
    item = root.find("channel/item")
    chapters = item.find("podcast:chapters", NAMESPACES)
    assert chapters.attrib == {"url": BASE_URL + "gpus-are-expensive/chapters.json", "type": "application/json+chapters"}
    transcript = item.find("podcast:transcript", NAMESPACES)
    assert transcript.get("url") == BASE_URL + "gpus-are-expensive/episode.vtt"
    assert transcript.get("type") == "text/vtt"
    assert root.find("channel/podcast:guid", NAMESPACES).text
    assert root.find("channel/itunes:explicit", NAMESPACES).text == "false"
    assert root.find("channel/atom:link", NAMESPACES).get("href") == BASE_URL + "podforge-demo/feed.xml"
    # every linked file exists where its URL points, relative to the output directory
    for url in (enclosure.href, chapters.get("url"), transcript.get("url"), channel.image.href):
        assert (output / url.removeprefix(BASE_URL)).is_file(), url


@pytest.mark.parametrize(
    ("owner", "name", "email"),
    [({}, "Podforge", None), ({"owner_name": "Ana Ruiz", "owner_email": "ana@example.org"}, "Ana Ruiz", "ana@example.org")],
)
def test_the_feed_names_its_owner(output: Path, show: ShowInfo, owner: dict, name: str, email: str | None):
    feed_path = update_feed(output / show.slug, show.model_copy(update=owner), published_episode(output, "owned", title="Owned"))
    parsed = feedparser.parse(feed_path.read_bytes())
    assert not parsed.bozo
    owner_element = ET.parse(feed_path).getroot().find("channel/itunes:owner", NAMESPACES)
    assert owner_element.find("itunes:name", NAMESPACES).text == name
    assert (owner_element.find("itunes:email", NAMESPACES).text if email else owner_element.find("itunes:email", NAMESPACES)) == email


def test_the_owner_comes_from_the_publish_config_and_a_bad_email_is_refused_by_field(tmp_path: Path):
    from podforge.config import load_config

    studio = tmp_path / "studio.yaml"
    studio.write_text("publish: {owner_name: Ana Ruiz, owner_email: ana@example.org}\n", encoding="utf-8")
    publish = load_config([studio]).publish
    assert (publish.owner_name, publish.owner_email) == ("Ana Ruiz", "ana@example.org")
    studio.write_text("publish: {owner_email: not-an-address}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="owner_email"):
        load_config([studio])


def test_republishing_replaces_the_item_and_keeps_others_newest_first(output: Path, show: ShowInfo):
    show_dir = output / show.slug
    update_feed(show_dir, show, published_episode(output, "first", title="First", when=T0))
    update_feed(show_dir, show, published_episode(output, "second", title="Second", when=T0 + timedelta(days=1)))
    update_feed(show_dir, show, published_episode(output, "first", title="First, fixed", mp3_bytes=7000, when=T0).model_copy(update={"published": None}))

    parsed = feedparser.parse((show_dir / "feed.xml").read_bytes())
    assert [entry.title for entry in parsed.entries] == ["Second", "First, fixed"]
    assert len({entry.id for entry in parsed.entries}) == 2
    republished = parsed.entries[1]
    assert republished.enclosures[0].length == "7000"
    assert datetime(*republished.published_parsed[:6], tzinfo=UTC) == T0, "re-publishing keeps the first publication date"

    state = json.loads((show_dir / "feed-items.json").read_text(encoding="utf-8"))
    assert [item["title"] for item in state["items"]] == ["Second", "First, fixed"]


def test_feed_is_rebuilt_deterministically_from_its_state(output: Path, show: ShowInfo):
    show_dir = output / show.slug
    episode = published_episode(output, "same", title="Same")
    first = update_feed(show_dir, show, episode).read_bytes()
    second = update_feed(show_dir, show, episode).read_bytes()
    assert first == second
    ET.fromstring(second)  # well-formed


def test_explicit_flag_and_special_characters(output: Path, show: ShowInfo):
    show = show.model_copy(update={"explicit": True})
    episode = published_episode(output, "ampersand", title='Rock & "Roll" <live>')
    parsed = feedparser.parse(update_feed(output / show.slug, show, episode).read_bytes())
    assert not parsed.bozo
    assert parsed.entries[0].title == 'Rock & "Roll" <live>'
    # Apple's current spec spells the flag "true"/"false" (feedparser only knows the old "yes"/"clean")
    root = ET.parse(output / show.slug / "feed.xml").getroot()
    assert root.find("channel/itunes:explicit", NAMESPACES).text == "true"
    assert root.find("channel/item/itunes:explicit", NAMESPACES).text == "true"


@pytest.mark.parametrize(
    ("size", "fmt", "message"),
    [((1400, 1000), "PNG", "square"), ((1000, 1000), "PNG", "1400-3000"), ((3200, 3200), "PNG", "got 3200x3200"), ((1400, 1400), "GIF", "PNG or JPEG")],
)
def test_bad_cover_art_is_refused_by_name(output: Path, show: ShowInfo, tmp_path: Path, size, fmt, message):
    cover = tmp_path / f"bad.{fmt.lower()}"
    Image.new("RGB", size).save(cover, format=fmt)
    with pytest.raises(ConfigError, match=message) as error:
        update_feed(output / show.slug, show.model_copy(update={"cover": cover}), published_episode(output, "ep", title="Ep"))
    assert error.value.file == str(cover) and error.value.field == "cover"
    assert not (output / show.slug / "feed.xml").exists()


def test_files_outside_the_output_directory_are_refused(output: Path, show: ShowInfo, tmp_path: Path):
    episode = published_episode(output, "ep", title="Ep")
    elsewhere = tmp_path / "elsewhere.vtt"
    elsewhere.write_text("WEBVTT\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="outside the published folder"):
        update_feed(output / show.slug, show, episode.model_copy(update={"transcript_vtt": elsewhere}))
    with pytest.raises(ConfigError, match="not found"):
        update_feed(output / show.slug, show, episode.model_copy(update={"chapters_json": output / "ep" / "missing.json"}))


def test_unsafe_slugs_are_refused():
    with pytest.raises(ValueError, match="lowercase"):
        FeedEpisode(slug="../etc", title="x", mp3=Path("x.mp3"), duration_s=1)
    assert ShowInfo(title="My Show: Season 2!").slug == "my-show-season-2"


def test_podcast_guid_matches_the_namespace_spec_examples():
    # the two examples in the Podcasting 2.0 namespace documentation for <podcast:guid>
    assert podcast_guid("https://mp3s.nashownotes.com/pc20rss.xml") == "917393e3-1b1e-5cef-ace4-edaa54e1f810"
    assert podcast_guid("https://podnews.net/rss/") == "9b024349-ccf0-5f69-a609-6b82873eab3c"


def test_cover_art_is_made_from_the_title_when_none_is_given(output: Path, show: ShowInfo):
    show = show.model_copy(update={"cover": None})
    feed_path = update_feed(output / show.slug, show, published_episode(output, "ep", title="Ep"))
    cover = output / show.slug / "cover.png"
    with Image.open(cover) as image:
        assert image.format == "PNG" and image.size[0] == image.size[1] and 1400 <= image.size[0] <= 3000
    assert feedparser.parse(feed_path.read_bytes()).feed.image.href == BASE_URL + "podforge-demo/cover.png"
