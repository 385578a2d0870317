"""ID3v2.3 tags for the episode MP3: title, show, cover art and chapters (CHAP/CTOC).

ID3v2.3 rather than 2.4 because podcast apps and older players read 2.3 most reliably; text is written
as UTF-16, the only Unicode encoding that 2.3 knows. The file is tagged as a temporary copy and renamed
into place, so a killed run never leaves a half-tagged MP3.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from mutagen.id3 import (
    APIC,
    CHAP,
    COMM,
    CTOC,
    ID3,
    TALB,
    TCON,
    TDRC,
    TIT2,
    TLAN,
    TPE1,
    CTOCFlags,
    Encoding,
    PictureType,
)
from PIL import Image, UnidentifiedImageError

from podforge.errors import EngineError
from podforge.io import atomic_path
from podforge.publishing.chapters import ChapterMark

TOC_ELEMENT_ID = "toc"
COVER_MIME_BY_FORMAT = {"PNG": "image/png", "JPEG": "image/jpeg"}
# ID3 wants ISO 639-2 codes; scripts give ISO 639-1 ("en"). Languages without an entry get no TLAN frame.
ISO_639_2 = {
    "ar": "ara", "de": "deu", "en": "eng", "es": "spa", "fr": "fra", "hi": "hin", "it": "ita",
    "ja": "jpn", "ko": "kor", "nl": "nld", "pl": "pol", "pt": "por", "ru": "rus", "sv": "swe",
    "tr": "tur", "uk": "ukr", "zh": "zho",
}  # fmt: skip


def tag_episode_mp3(
    mp3: Path,
    *,
    title: str,
    show: str,
    description: str = "",
    chapters: list[ChapterMark] = [],  # noqa: B006 - read only
    cover_png: Path | None = None,
    language: str = "en",
    year: int | None = None,
) -> None:
    """Replace ``mp3``'s ID3 tag with an ID3v2.3 tag describing the episode."""
    mp3 = Path(mp3)
    if not mp3.is_file():
        raise EngineError("no such MP3 to tag", file=mp3)
    tags = episode_tags(title=title, show=show, description=description, chapters=chapters, cover=cover_png, language=language, year=year)
    tags.update_to_v23()
    with atomic_path(mp3) as tmp:
        shutil.copyfile(mp3, tmp)
        tags.save(tmp, v2_version=3, v1=0)


def episode_tags(
    *,
    title: str,
    show: str,
    description: str,
    chapters: list[ChapterMark],
    cover: Path | None,
    language: str,
    year: int | None,
) -> ID3:
    tags = ID3()
    utf16 = Encoding.UTF16
    tags.add(TIT2(encoding=utf16, text=[title]))
    tags.add(TALB(encoding=utf16, text=[show]))
    tags.add(TPE1(encoding=utf16, text=[show]))
    tags.add(TCON(encoding=utf16, text=["Podcast"]))
    language_code = ISO_639_2.get(language.split("-")[0].lower())
    if language_code:
        tags.add(TLAN(encoding=utf16, text=[language_code]))
    if description:
        tags.add(COMM(encoding=utf16, lang=language_code or "und", desc="", text=[description]))
    if year is not None:
        tags.add(TDRC(encoding=utf16, text=[str(year)]))
    if cover is not None:
        tags.add(cover_frame(Path(cover)))
    for frame in chapter_frames(chapters):
        tags.add(frame)
    return tags


def cover_frame(cover: Path) -> APIC:
    """An APIC front-cover frame; the image must be a PNG or a JPEG."""
    try:
        with Image.open(cover) as image:
            image_format = image.format
    except (FileNotFoundError, UnidentifiedImageError):
        raise EngineError("cover art is missing or not an image", file=cover, field="cover") from None
    mime = COVER_MIME_BY_FORMAT.get(image_format or "")
    if mime is None:
        raise EngineError(f"cover art must be PNG or JPEG, not {image_format}", file=cover, field="cover")
    return APIC(encoding=Encoding.UTF16, mime=mime, type=PictureType.COVER_FRONT, desc="Cover", data=cover.read_bytes())


def chapter_frames(chapters: list[ChapterMark]) -> list[CHAP | CTOC]:
    """One CHAP frame per chapter and a top-level, ordered CTOC listing them (ID3 chapter addendum)."""
    if not chapters:
        return []
    element_ids = [f"chp{index}" for index in range(len(chapters))]
    frames: list[CHAP | CTOC] = [
        CTOC(
            element_id=TOC_ELEMENT_ID,
            flags=CTOCFlags.TOP_LEVEL | CTOCFlags.ORDERED,
            child_element_ids=element_ids,
            sub_frames=[TIT2(encoding=Encoding.UTF16, text=["Chapters"])],
        )
    ]
    for element_id, mark in zip(element_ids, chapters, strict=True):
        frames.append(
            CHAP(
                element_id=element_id,
                start_time=round(mark.start_s * 1000),
                end_time=round(mark.end_s * 1000),
                start_offset=0xFFFFFFFF,  # "not used": players seek by time
                end_offset=0xFFFFFFFF,
                sub_frames=[TIT2(encoding=Encoding.UTF16, text=[mark.title])],
            )
        )
    return frames
