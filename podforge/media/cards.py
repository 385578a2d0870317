"""Still images drawn with Pillow: the video's background card and generated cover art.

Both share a palette derived from the show name (a dark gradient and a light accent), so an episode's
video matches its cover and each show keeps its colours. Text is set in DejaVu Sans when the system has
it, else in Pillow's built-in scalable font, and is shrunk, wrapped and finally ellipsized so that it
never leaves its box. The same inputs always give the same PNG.
"""

from __future__ import annotations

import colorsys
import hashlib
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from podforge.errors import ConfigError
from podforge.io import atomic_path

RGB = tuple[int, int, int]
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont

FONT_DIRS = (
    Path("/usr/share/fonts/truetype/dejavu"),  # Debian, Ubuntu
    Path("/usr/share/fonts/dejavu-sans-fonts"),  # Fedora
    Path("/usr/share/fonts/TTF"),  # Arch
    Path("/usr/share/fonts/dejavu"),  # Alpine
)
FONT_FILES = {True: "DejaVuSans-Bold.ttf", False: "DejaVuSans.ttf"}
LINE_SPACING = 1.22
"""Line pitch as a multiple of the font size; also the height budget of one line when fitting."""
COVER_SIZES = range(1400, 3001)
"""Square cover art sizes podcast directories accept (Apple Podcasts: 1400 to 3000 px)."""


class Box(NamedTuple):
    left: int
    top: int
    width: int
    height: int


class Palette(NamedTuple):
    top: RGB
    bottom: RGB
    accent: RGB
    text: RGB


class CardLayout(NamedTuple):
    """Where things go on the video background; captions (ASS, bottom-aligned) use the rest below."""

    show: Box
    title: Box
    waveform: Box


class SetText(NamedTuple):
    """Text fitted to a box: the font and each line with its left-baseline anchor."""

    font: Font
    lines: list[tuple[int, int, str]]


def palette_for(show: str) -> Palette:
    """A dark two-tone gradient and a light accent, with a hue derived from the show name."""
    hue = hashlib.sha256(show.encode("utf-8")).digest()[0] / 255

    def rgb(h: float, s: float, v: float) -> RGB:
        r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
        return round(r * 255), round(g * 255), round(b * 255)

    return Palette(top=rgb(hue, 0.55, 0.26), bottom=rgb(hue + 0.08, 0.65, 0.07), accent=rgb(hue + 0.45, 0.35, 1.0), text=(242, 242, 246))


def card_layout(width: int, height: int) -> CardLayout:
    """Show name at the top, the title below it, the waveform in the middle; the lowest fifth is left to captions."""
    margin = _even(width * 0.07)
    inner = width - 2 * margin
    return CardLayout(
        show=Box(margin, _even(height * 0.07), inner, _even(height * 0.05)),
        title=Box(margin, _even(height * 0.15), inner, _even(height * 0.29)),
        waveform=Box(margin, _even(height * 0.49), inner, _even(height * 0.26)),
    )


@lru_cache(maxsize=64)
def load_font(size: int, *, bold: bool) -> Font:
    """DejaVu Sans (bold or book) at ``size`` px, or Pillow's built-in scalable font without it."""
    for folder in FONT_DIRS:
        path = folder / FONT_FILES[bold]
        if path.is_file():
            return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size=size)


def fit_text(text: str, box: Box, *, max_size: int, min_size: int, bold: bool, max_lines: int) -> SetText:
    """Set ``text`` in ``box`` at the largest size from ``max_size`` down that fits whole.

    Lines wrap at spaces (a word wider than the box breaks between letters). If nothing fits even at
    ``min_size`` the text keeps the lines that fit and the last one ends in an ellipsis.
    """
    words = text.split()
    size = max_size
    while True:
        font = load_font(size, bold=bold)
        pitch = round(size * LINE_SPACING)
        capacity = min(max_lines, box.height // pitch)
        lines = wrap(words, font, box.width)
        if len(lines) <= capacity or size <= min_size:
            break
        size = max(min_size, int(size * 0.92))
    if len(lines) > capacity:
        lines = lines[: max(capacity, 1)]
        lines[-1] = ellipsize(lines[-1], font, box.width)
    baseline = round(size * 0.95)
    return SetText(font, [(box.left, box.top + baseline + i * pitch, line) for i, line in enumerate(lines)])


def wrap(words: list[str], font: Font, width: int) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in words:
        candidate = f"{current} {word}" if current else word
        if font.getlength(candidate) <= width:
            current = candidate
            continue
        if current:
            lines.append(current)
        current = word
        while font.getlength(current) > width:
            cut = _longest_prefix(current, font, width)
            lines.append(current[:cut])
            current = current[cut:]
    if current:
        lines.append(current)
    return lines


def ellipsize(line: str, font: Font, width: int) -> str:
    """``line`` with an ellipsis appended, shortened from the end until it fits ``width``."""
    while line and font.getlength(line.rstrip() + "…") > width:
        line = line[:-1]
    return line.rstrip() + "…"


def _longest_prefix(word: str, font: Font, width: int) -> int:
    cut = len(word)
    while cut > 1 and font.getlength(word[:cut]) > width:
        cut -= 1
    return cut


def _even(value: float) -> int:
    return int(value) // 2 * 2


GRADIENT_STEP = 8
"""The gradient is computed on a grid this many times coarser and enlarged: it is smooth enough that the
result is within one level of computing every pixel, at a tenth of the time (a 1400 px cover: 0.09 s)."""


def gradient(width: int, height: int, palette: Palette) -> Image.Image:
    """A diagonal dark gradient with a soft glow of the accent colour near the top left."""
    columns, rows = max(2, width // GRADIENT_STEP), max(2, height // GRADIENT_STEP)
    # each coarse pixel holds the value at its centre, as the enlargement reads it
    x = ((np.arange(columns) + 0.5) * width / columns - 0.5) / max(1, width - 1)
    y = ((np.arange(rows) + 0.5) * height / rows - 0.5) / max(1, height - 1)
    return shade(x, y, width / height, palette).resize((width, height), Image.Resampling.BILINEAR)


def shade(x: np.ndarray, y: np.ndarray, aspect: float, palette: Palette) -> Image.Image:
    """The gradient at horizontal positions ``x`` and vertical positions ``y`` (0 to 1 across a picture of
    this ``aspect``): at every pixel, ``shade(np.linspace(0, 1, width), np.linspace(0, 1, height), …)``."""
    x, y = x.astype(np.float32)[None, :], y.astype(np.float32)[:, None]
    mix = np.clip(0.8 * y + 0.2 * x, 0.0, 1.0)[..., None]
    top, bottom, accent = (np.array(colour, dtype=np.float32) for colour in palette[:3])
    glow = np.exp(-(((x - 0.15) * aspect) ** 2 + (y - 0.1) ** 2) / 0.18)[..., None]
    pixels = top * (1 - mix) + bottom * mix + accent * 0.10 * glow
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def draw_text(draw: ImageDraw.ImageDraw, text: SetText, fill: RGB) -> None:
    for x, y, line in text.lines:
        draw.text((x, y), line, font=text.font, fill=fill, anchor="ls")


def render_background(path: Path, *, title: str, show: str, width: int = 1280, height: int = 720) -> Path:
    """The audiogram's still background: gradient, show name, wrapped title, a panel for the waveform."""
    palette = palette_for(show)
    layout = card_layout(width, height)
    image = gradient(width, height, palette)
    draw = ImageDraw.Draw(image, "RGBA")
    show_size = max(10, layout.show.height * 7 // 10)
    draw_text(draw, fit_text(show.upper(), layout.show, max_size=show_size, min_size=max(8, show_size // 2), bold=True, max_lines=1), palette.accent)
    title_size = max(12, height * 8 // 100)
    draw_text(draw, fit_text(title, layout.title, max_size=title_size, min_size=max(10, title_size // 2), bold=True, max_lines=3), palette.text)
    wave = layout.waveform
    draw.rounded_rectangle((wave.left, wave.top, wave.left + wave.width, wave.top + wave.height), radius=max(4, height // 60), fill=(255, 255, 255, 14))
    middle = wave.top + wave.height // 2
    draw.line((wave.left + wave.width // 40, middle, wave.left + wave.width - wave.width // 40, middle), fill=(*palette.accent, 70), width=max(1, height // 360))
    return save_png(image, path)


def render_cover(path: Path, *, title: str, show: str, size: int = 1400) -> Path:
    """Square cover art for a show without its own: gradient, show name, a bar motif, the title."""
    if size not in COVER_SIZES:
        raise ConfigError(f"cover art must be {COVER_SIZES.start}-{COVER_SIZES.stop - 1} px square, got {size}", field="cover_size")
    palette = palette_for(show)
    image = gradient(size, size, palette)
    draw = ImageDraw.Draw(image, "RGBA")
    margin = size * 8 // 100
    inner = size - 2 * margin
    show_box = Box(margin, margin, inner, size * 14 // 100)
    draw_text(draw, fit_text(show.upper(), show_box, max_size=size * 6 // 100, min_size=size * 3 // 100, bold=True, max_lines=2), palette.accent)
    draw_bars(draw, Box(margin, size * 30 // 100, inner, size * 22 // 100), seed=f"{show}\n{title}", colour=palette.accent)
    title_box = Box(margin, size * 57 // 100, inner, size * 35 // 100)
    draw_text(draw, fit_text(title, title_box, max_size=size * 8 // 100, min_size=size * 4 // 100, bold=True, max_lines=4), palette.text)
    return save_png(image, path)


def draw_bars(draw: ImageDraw.ImageDraw, box: Box, *, seed: str, colour: RGB, count: int = 48) -> None:
    """A symmetric bar 'waveform' whose heights come from a hash of ``seed`` (same seed, same bars)."""
    digest = hashlib.sha256(seed.encode("utf-8")).digest() + hashlib.sha256(seed.encode("utf-8") + b"+").digest()
    pitch = box.width / count
    middle = box.top + box.height / 2
    for index in range(count):
        envelope = 0.35 + 0.65 * np.sin(np.pi * (index + 0.5) / count)
        half = box.height / 2 * envelope * (0.25 + 0.75 * digest[index] / 255)
        left = box.left + index * pitch + pitch * 0.2
        draw.rounded_rectangle((left, middle - half, left + pitch * 0.6, middle + half), radius=pitch * 0.3, fill=(*colour, 200))


def save_png(image: Image.Image, path: Path) -> Path:
    with atomic_path(Path(path)) as tmp:
        image.save(tmp, format="PNG")
    return Path(path)
