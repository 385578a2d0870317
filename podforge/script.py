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

Files a script names (portraits) are paths relative to the script's folder or to the configured assets
folder; :func:`resolve_asset` refuses absolute paths, ``..`` and links that lead outside those folders.
``language:`` is an ISO 639-1 code (``en``, ``de``, ``zh``, optionally with a region: ``en-GB``).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import yaml
from anyascii import anyascii
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from podforge.errors import ScriptError

SLUG_PATTERN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
SPEAKER_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_.'-]{0,31}$")
SPEAKER_TAG = re.compile(r"^(?P<speaker>[A-Za-z][A-Za-z0-9_.'-]{0,31})\s*:\s+(?P<text>\S.*)$")
CHAPTER_HEADING = re.compile(r"^##\s+(?P<title>\S.*)$")
DEFAULT_SINGLE_HOST = "HOST"
MAX_SCRIPT_BYTES = 2_000_000
MAX_SLUG_CHARS = 64
SYLLABIC_SCRIPTS = ("CJK", "HIRAGANA", "KATAKANA", "HANGUL", "YI SYLLABLE")
"""Scripts whose characters are syllables or words: each is transliterated as a word of its own."""
ISO_639_1 = frozenset(
    "aa ab ae af ak am an ar as av ay az ba be bg bh bi bm bn bo br bs ca ce ch co cr cs cu cv cy da de dv dz ee el en eo es et "
    "eu fa ff fi fj fo fr fy ga gd gl gn gu gv ha he hi ho hr ht hu hy hz ia id ie ig ii ik io is it iu ja jv ka kg ki kj kk kl "
    "km kn ko kr ks ku kv kw ky la lb lg li ln lo lt lu lv mg mh mi mk ml mn mr ms mt my na nb nd ne ng nl nn no nr nv ny oc oj "
    "om or os pa pi pl ps pt qu rm rn ro ru rw sa sc sd se sg si sk sl sm sn so sq sr ss st su sv sw ta te tg th ti tk tl tn to "
    "tr ts tt tw ty ug uk ur uz ve vi vo wa wo xh yi yo za zh zu".split()
)


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

    @field_validator("language")
    @classmethod
    def _known_language(cls, language: str) -> str:
        if primary_language(language) not in ISO_639_1:
            raise ValueError(f"unknown language {language!r}; use an ISO 639-1 code such as en, de, fr, zh (optionally with a region: en-GB)")
        return language

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
    folder: Path | None = Field(default=None, description="the script file's folder, where the files it names are looked for first; None for inline text")

    @property
    def slug(self) -> str:
        return self.meta.slug or slugify(self.meta.title)

    @property
    def speakers(self) -> list[str]:
        return list(dict.fromkeys(line.speaker for line in self.lines))

    @property
    def portraits(self) -> dict[str, Path]:
        """Speaker → portrait image as written in the front matter, when every speaker has one, else empty
        (the audiogram is used). The plan resolves them with :func:`resolve_asset`."""
        images = {speaker: self.meta.hosts[speaker].portrait for speaker in self.speakers}
        return images if all(images.values()) else {}


def primary_language(language: str) -> str:
    """``en`` for ``en-GB``: the part a voice's languages are matched on."""
    return language.split("-", 1)[0].lower()


LANGUAGE_SCRIPTS: dict[str, frozenset[str]] = {
    **dict.fromkeys("ru uk be bg mk sr kk ky mn tg tt ba cv ce os kv av ab".split(), frozenset({"Cyrillic"})),
    **dict.fromkeys("ar fa ur ps ug sd ku".split(), frozenset({"Arabic"})),
    **dict.fromkeys("he yi".split(), frozenset({"Hebrew"})),
    **dict.fromkeys("hi mr ne sa bh".split(), frozenset({"Devanagari"})),
    **dict.fromkeys("bn as".split(), frozenset({"Bengali"})),
    **dict.fromkeys("bo dz".split(), frozenset({"Tibetan"})),
    **dict.fromkeys("am ti".split(), frozenset({"Ethiopic"})),
    "el": frozenset({"Greek"}),
    "zh": frozenset({"Han"}),
    "ja": frozenset({"Han", "Hiragana", "Katakana"}),
    "ko": frozenset({"Hangul", "Han"}),
    "pa": frozenset({"Gurmukhi"}),
    "gu": frozenset({"Gujarati"}),
    "or": frozenset({"Oriya"}),
    "ta": frozenset({"Tamil"}),
    "te": frozenset({"Telugu"}),
    "kn": frozenset({"Kannada"}),
    "ml": frozenset({"Malayalam"}),
    "si": frozenset({"Sinhala"}),
    "th": frozenset({"Thai"}),
    "lo": frozenset({"Lao"}),
    "my": frozenset({"Myanmar"}),
    "km": frozenset({"Khmer"}),
    "ka": frozenset({"Georgian"}),
    "hy": frozenset({"Armenian"}),
    "dv": frozenset({"Thaana"}),
}
"""Languages not written in the Latin alphabet, and the writing systems they use (Latin letters, as in
acronyms, are allowed in every language)."""


def writing_system(char: str) -> str:
    """The writing system of a letter, by its Unicode name: "Latin", "Cyrillic", "Han", "Arabic"…"""
    words = unicodedata.name(char, "").split()
    if words[:1] in (["FULLWIDTH"], ["HALFWIDTH"], ["MATHEMATICAL"]):
        words = words[1:]
    first = words[0] if words else ""
    return "Han" if first == "CJK" else first.title()


def foreign_letters(text: str, languages: Sequence[str]) -> dict[str, int]:
    """Letters of ``text`` in writing systems that none of ``languages`` is written in: system -> count."""
    allowed = {"Latin"}.union(*(LANGUAGE_SCRIPTS.get(primary_language(code), frozenset()) for code in languages))
    counts: dict[str, int] = {}
    for char in text:
        if char.isalpha() and not char.isascii():
            system = writing_system(char)
            if system not in allowed:
                counts[system] = counts.get(system, 0) + 1
    return counts


def slugify(text: str) -> str:
    """A filesystem- and URL-safe slug: lowercase ASCII letters, digits and dashes.

    Other scripts are transliterated (``anyascii``: "你好世界" → "ni-hao-shi-jie", "Привет" → "privet"); path
    separators, dots and shell characters become dashes. When nothing is left ("???") the slug is
    ``episode-`` and a short hash of the text, and a slug cut to :data:`MAX_SLUG_CHARS` ends in one, so
    different titles keep different slugs.
    """
    words = re.sub(r"[^a-z0-9]+", "-", _transliterate(text).lower()).strip("-")
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]
    if not words:
        return f"episode-{digest}"
    if len(words) > MAX_SLUG_CHARS:
        return f"{words[: MAX_SLUG_CHARS - 9].strip('-')}-{digest}"
    return words


def _transliterate(text: str) -> str:
    """ASCII for ``text``; a character that stands for a syllable (Chinese, Japanese kana, Hangul) becomes a word of its own."""
    out = []
    for char in unicodedata.normalize("NFC", text):
        latin = char if char.isascii() else anyascii(char)
        out.append(f" {latin} " if unicodedata.name(char, "").startswith(SYLLABIC_SCRIPTS) else latin)
    return "".join(out)


def resolve_asset(written: Path, roots: Sequence[Path], *, source: str, field: str) -> Path:
    """The file a script names, found in the first of ``roots`` that has it, as a real path inside that root.

    Refused with a :class:`ScriptError` naming ``source`` and ``field``: an absolute path, a path with ``..``,
    a path that leads (through a link) outside every root, and a file none of the roots has.
    """
    if written.is_absolute() or written.drive:
        raise ScriptError(f"{written} is an absolute path; name a file relative to the script's folder or the assets folder", file=source, field=field)
    if ".." in written.parts:
        raise ScriptError(f"{written} goes up with '..'; name a file inside the script's folder or the assets folder", file=source, field=field)
    real_roots = [Path(root).resolve() for root in roots]
    for root in real_roots:
        candidate = root / written
        if not (candidate.exists() or candidate.is_symlink()):
            continue
        real = candidate.resolve()
        if not any(real.is_relative_to(allowed) for allowed in real_roots):
            raise ScriptError(f"{written} is a link to {real}, outside {' and '.join(map(str, real_roots))}", file=source, field=field)
        return real
    where = " or ".join(str(root) for root in real_roots) or "nowhere (inline text has no folder: set assets_dir in the config)"
    raise ScriptError(f"{written} does not exist in {where}", file=source, field=field)


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
    """Parse a script file; the files it names are looked for in its folder first."""
    path = Path(path)
    script = parse_script(read_script_file(path), source=str(path))
    return script.model_copy(update={"folder": path.parent.resolve()})


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
