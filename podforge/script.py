"""The episode script: a Markdown/text file with optional YAML front matter.

```
---
title: GPUs Are Expensive
show: Podforge Demo
hosts:
  ALEX: {voice: joe}
  SAM: {voice: joe-bright, portrait: sam.png}
music: calm lofi, 84 bpm          # or {engine: musicgen, adapter: my-style, prompt: calm lofi}
---
## Cold open
ALEX: Welcome back.
SAM: Glad to be here.
```

A ``## Heading`` starts a chapter. A line without a speaker tag continues the previous line; a body with
no speaker tags at all is read by a single host, one paragraph per line.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from podforge.errors import ScriptError

SLUG_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
SPEAKER_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_.'-]{0,31}$")
SPEAKER_TAG = re.compile(r"^(?P<speaker>[A-Za-z][A-Za-z0-9_.'-]{0,31})\s*:\s+(?P<text>\S.*)$")
CHAPTER_HEADING = re.compile(r"^##\s+(?P<title>\S.*)$")
DEFAULT_SINGLE_HOST = "HOST"
MAX_SCRIPT_BYTES = 2_000_000


class Host(BaseModel):
    """One voice of the show: a voice preset name and, optionally, a portrait image."""

    model_config = ConfigDict(extra="forbid")

    voice: str | None = None
    portrait: Path | None = None


class EpisodeMusic(BaseModel):
    """The bed this episode asks for; what it leaves out comes from the config (``use.music``, ``music.default_prompt``)."""

    model_config = ConfigDict(extra="forbid")

    engine: str | None = None
    adapter: str | None = Field(default=None, description="a LoRA made by `podforge train-music --name STYLE`: the style's name")
    prompt: str | None = None


class EpisodeMeta(BaseModel):
    """The front matter, validated."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(default="Untitled episode", min_length=1, max_length=200)
    show: str = Field(default="Podforge", min_length=1, max_length=200)
    slug: str | None = None
    description: str = ""
    hosts: dict[str, Host] = Field(default_factory=dict)
    music: str | EpisodeMusic | None = Field(default=None, description="the bed's prompt, or {engine, adapter, prompt}")
    language: str = Field(default="en", pattern=r"^[a-z]{2,3}(-[A-Za-z]{2,4})?$")
    explicit: bool = False

    @field_validator("slug")
    @classmethod
    def _slug_is_safe(cls, slug: str | None) -> str | None:
        if slug is not None and not SLUG_PATTERN.match(slug):
            raise ValueError(
                "must be lowercase letters, digits and dashes (no '/', '..' or shell characters), "
                f"at most 64 characters; got {slug!r}"
            )
        return slug

    @field_validator("hosts")
    @classmethod
    def _speaker_names(cls, hosts: dict[str, Host]) -> dict[str, Host]:
        for name in hosts:
            if not SPEAKER_PATTERN.match(name):
                raise ValueError(f"speaker name {name!r} must be a letter then letters, digits, '_', '.', \"'\" or '-'")
        return hosts


class ScriptLine(BaseModel):
    """One spoken line: who says it, what they say, and where it sits."""

    index: int
    speaker: str
    text: str
    chapter: int
    source_line: int


class Chapter(BaseModel):
    index: int
    title: str
    first_line: int


class Script(BaseModel):
    """A parsed, validated episode script."""

    source: str
    meta: EpisodeMeta
    lines: list[ScriptLine]
    chapters: list[Chapter]
    content_sha256: str

    @property
    def slug(self) -> str:
        return self.meta.slug or slugify(self.meta.title)

    @property
    def speakers(self) -> list[str]:
        return list(dict.fromkeys(line.speaker for line in self.lines))

    @property
    def portraits(self) -> dict[str, Path]:
        """Speaker → portrait image when every speaker has one, else empty (the audiogram is used)."""
        images = {speaker: self.meta.hosts[speaker].portrait for speaker in self.speakers}
        return images if all(images.values()) else {}


def slugify(text: str) -> str:
    """A filesystem- and URL-safe slug: path separators, dots and shell characters become dashes."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:64].strip("-")
    return slug or "episode"


def read_script_file(path: Path) -> str:
    """Read a script file as UTF-8 text, refusing empty, binary and non-UTF-8 files by name."""
    path = Path(path)
    if not path.is_file():
        raise ScriptError("no such file", file=path)
    raw = path.read_bytes()
    if len(raw) > MAX_SCRIPT_BYTES:
        raise ScriptError(f"file is {len(raw)} bytes; a script may be at most {MAX_SCRIPT_BYTES}", file=path)
    if b"\x00" in raw:
        raise ScriptError("binary file (contains NUL bytes); expected a UTF-8 text script", file=path)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ScriptError(f"not UTF-8 text (invalid byte at offset {exc.start}); save the script as UTF-8", file=path) from None


def load_script(path: Path) -> Script:
    """Parse a script file; portrait paths in it are relative to the script's folder."""
    path = Path(path)
    script = parse_script(read_script_file(path), source=str(path))
    hosts = {
        name: host.model_copy(update={"portrait": (path.parent / host.portrait).resolve()}) if host.portrait and not host.portrait.is_absolute() else host
        for name, host in script.meta.hosts.items()
    }
    return script.model_copy(update={"meta": script.meta.model_copy(update={"hosts": hosts})})


def parse_script(text: str, source: str = "<inline>") -> Script:
    """Parse script text into a :class:`Script`, raising :class:`ScriptError` naming source and field."""
    if not text.strip():
        raise ScriptError("script is empty (only whitespace)", file=source)
    front_matter, body, body_offset = _split_front_matter(text, source)
    meta = _validate_meta(front_matter, source)
    lines, chapters = _parse_body(body, body_offset, meta, source)
    if not lines:
        raise ScriptError("no spoken lines found; write lines as 'SPEAKER: text'", file=source, field="body")
    meta = _with_implicit_hosts(meta, lines)
    return Script(
        source=source,
        meta=meta,
        lines=lines,
        chapters=chapters,
        content_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
    )


def _split_front_matter(text: str, source: str) -> tuple[dict, str, int]:
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        return {}, text, 0
    for end, line in enumerate(lines[1:], start=1):
        if line.strip() in ("---", "..."):
            break
    else:
        raise ScriptError("front matter starts with '---' but has no closing '---'", file=source, field="front matter")
    try:
        data = yaml.safe_load("\n".join(lines[1:end])) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 2}" if mark is not None else ""
        raise ScriptError(f"malformed YAML{where}: {getattr(exc, 'problem', exc)}", file=source, field="front matter") from None
    if not isinstance(data, dict):
        raise ScriptError("must be a YAML mapping (key: value)", file=source, field="front matter")
    return data, "\n".join(lines[end + 1 :]), end + 1


def _validate_meta(data: dict, source: str) -> EpisodeMeta:
    try:
        return EpisodeMeta.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or "front matter"
        raise ScriptError(error["msg"].removeprefix("Value error, "), file=source, field=field) from None


def _parse_body(body: str, offset: int, meta: EpisodeMeta, source: str) -> tuple[list[ScriptLine], list[Chapter]]:
    declared = {name.lower(): name for name in meta.hosts}
    raw_lines = body.splitlines()
    tagged = any(SPEAKER_TAG.match(line.strip()) for line in raw_lines)
    single_host = next(iter(meta.hosts), DEFAULT_SINGLE_HOST)

    lines: list[ScriptLine] = []
    chapters: list[Chapter] = []
    continuing = False  # whether untagged text extends the previous line (same paragraph)
    for number, raw in enumerate(raw_lines, start=offset + 1):
        stripped = raw.strip()
        if not stripped:
            continuing = False
            continue
        if heading := CHAPTER_HEADING.match(stripped):
            if not chapters and lines:
                chapters.append(Chapter(index=0, title="Intro", first_line=0))
            chapters.append(Chapter(index=len(chapters), title=heading["title"].strip(), first_line=len(lines)))
            continuing = False
            continue
        if stripped.startswith("#") or stripped.startswith("<!--"):
            continue  # a top-level title or a comment is not spoken
        tag = SPEAKER_TAG.match(stripped) if tagged else None
        if continuing and not tag:
            lines[-1] = lines[-1].model_copy(update={"text": f"{lines[-1].text} {stripped}"})
            continue
        if tagged and not tag:
            raise ScriptError(f"text without a speaker tag: {stripped[:40]!r}; write 'SPEAKER: text'", file=source, field=f"line {number}")
        speaker = _resolve_speaker(tag["speaker"], declared, source, number) if tag else single_host
        text = tag["text"].strip() if tag else stripped
        chapter = max(len(chapters) - 1, 0)
        lines.append(ScriptLine(index=len(lines), speaker=speaker, text=text, chapter=chapter, source_line=number))
        continuing = True
    return lines, [chapter for chapter in chapters if chapter.first_line < len(lines)]


def _resolve_speaker(tag: str, declared: dict[str, str], source: str, number: int) -> str:
    if not declared:
        return tag.upper()
    try:
        return declared[tag.lower()]
    except KeyError:
        known = ", ".join(sorted(declared.values()))
        raise ScriptError(f"unknown speaker {tag!r}; the front matter declares: {known}", file=source, field=f"line {number}") from None


def _with_implicit_hosts(meta: EpisodeMeta, lines: list[ScriptLine]) -> EpisodeMeta:
    """Speakers used without a ``hosts:`` section become hosts with the default voice."""
    hosts = dict(meta.hosts)
    for line in lines:
        hosts.setdefault(line.speaker, Host())
    return meta.model_copy(update={"hosts": hosts})
