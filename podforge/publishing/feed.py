"""The show's podcast feed: RSS 2.0 with the iTunes and Podcasting 2.0 namespaces.

Each show has a folder in the output directory (``output/<show>/``) holding ``feed.xml``, the show's
cover art and ``feed-items.json``, the list of published episodes from which the feed is rebuilt on every
publish. Re-publishing an episode replaces its entry (same guid); the others stay; newest first.

File URLs are ``base_url`` joined with the file's path relative to the output directory (the parent of
the show folder), so serving the output directory at ``base_url`` makes every link in the feed work.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import quote

from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, Field, field_validator, model_validator

from podforge.errors import ConfigError
from podforge.io import copy_atomic, write_text_atomic
from podforge.script import SLUG_PATTERN, slugify

FEED_FILE = "feed.xml"
ITEMS_FILE = "feed-items.json"
COVER_MIN_PX, COVER_MAX_PX = 1400, 3000
COVER_SUFFIX_BY_FORMAT = {"PNG": ".png", "JPEG": ".jpg"}
NAMESPACES = {
    "itunes": "http://www.itunes.com/dtds/podcast-1.0.dtd",
    "podcast": "https://podcastindex.org/namespace/1.0",
    "atom": "http://www.w3.org/2005/Atom",
}
# Podcasting 2.0: a feed's podcast:guid is a UUIDv5 of its URL (no scheme, no trailing slash) in this namespace.
PODCAST_GUID_NAMESPACE = uuid.UUID("ead4c236-bf58-58c6-a2c6-a6b28d128cb6")
for _prefix, _uri in NAMESPACES.items():
    ET.register_namespace(_prefix, _uri)


class ShowInfo(BaseModel):
    """What the feed says about the show as a whole."""

    title: str = Field(min_length=1, max_length=200)
    slug: str = ""
    description: str = ""
    author: str = "Podforge"
    owner_name: str | None = Field(default=None, description="itunes:owner's name; default: author")
    owner_email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", description="itunes:owner's e-mail")
    language: str = Field(default="en", pattern=r"^[a-z]{2,3}(-[A-Za-z]{2,4})?$")
    category: str = "Technology"
    explicit: bool = False
    base_url: str = Field(default="http://127.0.0.1:8000/", pattern=r"^https?://\S+$", description="URL at which the output directory is served")
    link: str | None = Field(default=None, description="the show's website; default: base_url")
    cover: Path | None = Field(default=None, description="square PNG/JPEG, 1400-3000 px; rendered from the title when absent")

    @model_validator(mode="after")
    def _default_slug(self) -> ShowInfo:
        if not self.slug:
            self.slug = slugify(self.title)
        elif not SLUG_PATTERN.match(self.slug):
            raise ValueError(f"show slug must be lowercase letters, digits and dashes; got {self.slug!r}")
        return self


class FeedEpisode(BaseModel):
    """One published episode, as the feed needs it (files are paths inside the output directory)."""

    slug: str
    title: str = Field(min_length=1)
    description: str = ""
    mp3: Path
    duration_s: float = Field(gt=0)
    published: datetime | None = Field(default=None, description="default: the first publication's time, else now")
    explicit: bool | None = Field(default=None, description="default: the show's flag")
    image: Path | None = None
    chapters_json: Path | None = None
    transcript_vtt: Path | None = None

    @field_validator("slug")
    @classmethod
    def _safe_slug(cls, slug: str) -> str:
        if not SLUG_PATTERN.match(slug):
            raise ValueError(f"must be lowercase letters, digits and dashes; got {slug!r}")
        return slug


class FeedItem(BaseModel):
    """An episode's entry as stored in ``feed-items.json``: everything the ``<item>`` needs, with URLs."""

    guid: str
    title: str
    description: str
    enclosure_url: str
    enclosure_bytes: int
    duration_s: float
    published: datetime
    explicit: bool
    image_url: str | None = None
    chapters_url: str | None = None
    transcript_url: str | None = None


class FeedItems(BaseModel):
    items: list[FeedItem] = Field(default_factory=list)


def update_feed(show_dir: Path, show: ShowInfo, episode: FeedEpisode) -> Path:
    """Add or replace ``episode`` in the show's feed and rewrite ``show_dir/feed.xml``; return its path."""
    show_dir = Path(show_dir).resolve()
    root = show_dir.parent
    cover = publish_show_cover(show_dir, show)
    stored = load_items(show_dir)
    item = feed_item(show, episode, root, previous={entry.guid: entry for entry in stored.items})
    items = [entry for entry in stored.items if entry.guid != item.guid] + [item]
    items.sort(key=lambda entry: (entry.published, entry.guid), reverse=True)
    write_text_atomic(show_dir / ITEMS_FILE, FeedItems(items=items).model_dump_json(indent=2) + "\n")
    feed_path = show_dir / FEED_FILE
    write_text_atomic(feed_path, render_feed(show, items, cover_url=file_url(show, cover, root), feed_url=file_url(show, feed_path, root)))
    return feed_path


def episode_guid(show_slug: str, episode_slug: str) -> str:
    """A guid that stays the same each time the episode is re-published."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"podforge:{show_slug}/{episode_slug}"))


def podcast_guid(feed_url: str) -> str:
    bare = feed_url.split("://", 1)[-1].rstrip("/")
    return str(uuid.uuid5(PODCAST_GUID_NAMESPACE, bare))


def feed_item(show: ShowInfo, episode: FeedEpisode, root: Path, previous: dict[str, FeedItem]) -> FeedItem:
    guid = episode_guid(show.slug, episode.slug)
    published = episode.published or (previous[guid].published if guid in previous else datetime.now(UTC))
    if published.tzinfo is None:
        published = published.replace(tzinfo=UTC)
    mp3 = Path(episode.mp3).resolve()
    if not mp3.is_file():
        raise ConfigError("episode MP3 not found", file=mp3, field="enclosure")

    def optional_url(path: Path | None) -> str | None:
        if path is None:
            return None
        if not Path(path).is_file():
            raise ConfigError("file to link from the feed not found", file=path, field="publish")
        return file_url(show, Path(path), root)

    return FeedItem(
        guid=guid,
        title=episode.title,
        description=episode.description,
        enclosure_url=file_url(show, mp3, root),
        enclosure_bytes=mp3.stat().st_size,
        duration_s=episode.duration_s,
        published=published,
        explicit=show.explicit if episode.explicit is None else episode.explicit,
        image_url=optional_url(episode.image),
        chapters_url=optional_url(episode.chapters_json),
        transcript_url=optional_url(episode.transcript_vtt),
    )


def file_url(show: ShowInfo, path: Path, root: Path) -> str:
    """The public URL of a file inside the output directory ``root``."""
    try:
        relative = path.resolve().relative_to(root)
    except ValueError:
        raise ConfigError(f"is outside the published folder {root}; the feed can only link files inside it", file=path, field="publish") from None
    return show.base_url.rstrip("/") + "/" + quote(relative.as_posix())


def load_items(show_dir: Path) -> FeedItems:
    path = show_dir / ITEMS_FILE
    if not path.is_file():
        return FeedItems()
    try:
        return FeedItems.model_validate_json(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ConfigError(f"unreadable feed state ({exc.__class__.__name__}); delete it to rebuild the feed from scratch", file=path) from None


def validate_cover(path: Path) -> str:
    """Check that ``path`` is podcast cover art (PNG or JPEG, square, 1400-3000 px); return its suffix."""
    try:
        with Image.open(path) as image:
            image_format, (width, height) = image.format, image.size
    except (FileNotFoundError, UnidentifiedImageError):
        raise ConfigError("cover art is missing or not an image", file=path, field="cover") from None
    if image_format not in COVER_SUFFIX_BY_FORMAT:
        raise ConfigError(f"cover art must be PNG or JPEG, not {image_format}", file=path, field="cover")
    if width != height or not COVER_MIN_PX <= width <= COVER_MAX_PX:
        raise ConfigError(
            f"cover art must be square, {COVER_MIN_PX}-{COVER_MAX_PX} px (podcast apps reject others); got {width}x{height}",
            file=path,
            field="cover",
        )
    return COVER_SUFFIX_BY_FORMAT[image_format]


def publish_show_cover(show_dir: Path, show: ShowInfo) -> Path:
    """The show's cover art inside the show folder: the given file, validated, or one made from the title."""
    if show.cover is None:
        from podforge.media.cards import render_cover

        return render_cover(show_dir / "cover.png", title=show.description or show.title, show=show.title)
    suffix = validate_cover(show.cover)
    target = show_dir / f"cover{suffix}"
    if Path(show.cover).resolve() != target:
        copy_atomic(show.cover, target)
    return target


def render_feed(show: ShowInfo, items: list[FeedItem], *, cover_url: str, feed_url: str) -> str:
    """The feed document for ``items`` (already in feed order)."""
    rss = ET.Element("rss", {"version": "2.0"})
    channel = ET.SubElement(rss, "channel")
    link = show.link or show.base_url
    _text(channel, "title", show.title)
    _text(channel, "link", link)
    _text(channel, "description", show.description or show.title)
    _text(channel, "language", show.language)
    _text(channel, "generator", "Podforge")
    if items:
        _text(channel, "lastBuildDate", format_datetime(items[0].published))
    ET.SubElement(channel, _ns("atom", "link"), {"href": feed_url, "rel": "self", "type": "application/rss+xml"})
    image = ET.SubElement(channel, "image")
    for tag, value in (("url", cover_url), ("title", show.title), ("link", link)):
        _text(image, tag, value)
    _text(channel, _ns("podcast", "guid"), podcast_guid(feed_url))
    _text(channel, _ns("itunes", "author"), show.author)
    owner = ET.SubElement(channel, _ns("itunes", "owner"))  # directories send ownership checks to its e-mail
    _text(owner, _ns("itunes", "name"), show.owner_name or show.author)
    if show.owner_email:
        _text(owner, _ns("itunes", "email"), show.owner_email)
    ET.SubElement(channel, _ns("itunes", "image"), {"href": cover_url})
    ET.SubElement(channel, _ns("itunes", "category"), {"text": show.category})
    _text(channel, _ns("itunes", "explicit"), _yes_no(show.explicit))
    _text(channel, _ns("itunes", "type"), "episodic")
    for entry in items:
        item = ET.SubElement(channel, "item")
        _text(item, "title", entry.title)
        _text(item, "description", entry.description or entry.title)
        ET.SubElement(item, "enclosure", {"url": entry.enclosure_url, "length": str(entry.enclosure_bytes), "type": "audio/mpeg"})
        _text(item, "guid", entry.guid).set("isPermaLink", "false")
        _text(item, "pubDate", format_datetime(entry.published))
        _text(item, _ns("itunes", "duration"), hms(entry.duration_s))
        _text(item, _ns("itunes", "explicit"), _yes_no(entry.explicit))
        _text(item, _ns("itunes", "episodeType"), "full")
        if entry.image_url:
            ET.SubElement(item, _ns("itunes", "image"), {"href": entry.image_url})
        if entry.chapters_url:
            ET.SubElement(item, _ns("podcast", "chapters"), {"url": entry.chapters_url, "type": "application/json+chapters"})
        if entry.transcript_url:
            ET.SubElement(item, _ns("podcast", "transcript"), {"url": entry.transcript_url, "type": "text/vtt", "language": show.language, "rel": "captions"})
    ET.indent(rss)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(rss, encoding="unicode") + "\n"


def hms(seconds: float) -> str:
    """``itunes:duration`` as HH:MM:SS (whole seconds, rounded)."""
    total = round(seconds)
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


def _ns(prefix: str, tag: str) -> str:
    return f"{{{NAMESPACES[prefix]}}}{tag}"


def _text(parent: ET.Element, tag: str, text: str) -> ET.Element:
    element = ET.SubElement(parent, tag)
    element.text = text
    return element


def _yes_no(flag: bool) -> str:
    return "true" if flag else "false"
