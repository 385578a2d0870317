"""Text normalisation before speech: write out what a person would say.

TTS models read "$1.50", "3:30 pm", "25°C" or "https://podforge.dev/docs" badly or not at all. This
module rewrites such tokens as words ("one dollar fifty", "three thirty p m", "twenty-five degrees
Celsius", "podforge dot dev slash docs") with ordered regular-expression passes: the most specific
patterns (URLs, e-mail addresses, times, money) run before the general ones (numbers), so a number
inside a URL or a price is read as part of it.

Every rewrite is tracked back to the words it came from: :func:`rewrites` pairs each stretch of the
script with what is said for it (for the report), and :func:`time_written_words` turns times of the spoken
words (from a TTS aligner or a recogniser) into times of the written words, so captions show the script's
words at the moment their spoken form is heard.

English (``en``) gets the full set of rules. Other languages get their numbers read by ``num2words`` in
that language and are otherwise left as written; a language ``num2words`` does not know is returned
unchanged, for the TTS engine to read as it can.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Sequence
from typing import NamedTuple

from num2words import CONVERTER_CLASSES, num2words

_NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
"""An unsigned number: 1,234,567.89 or 1234.5 (grouping commas only in groups of three)."""

_SCALES = {"k": "thousand", "K": "thousand", "thousand": "thousand", "m": "million", "M": "million", "mn": "million", "million": "million", "b": "billion", "B": "billion", "bn": "billion", "billion": "billion", "trillion": "trillion", "tn": "trillion"}

# symbol -> (singular, plural, minor unit singular, minor unit plural)
_CURRENCIES = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "US$": ("dollar", "dollars", "cent", "cents"),
    "€": ("euro", "euros", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "¥": ("yen", "yen", "sen", "sen"),
    "₹": ("rupee", "rupees", "paisa", "paise"),
}

# unit as written -> (singular, plural); case-sensitive, matched only right after a number
_UNITS = {
    "km/h": ("kilometer per hour", "kilometers per hour"),
    "m/s": ("meter per second", "meters per second"),
    "mph": ("mile per hour", "miles per hour"),
    "km": ("kilometer", "kilometers"),
    "cm": ("centimeter", "centimeters"),
    "mm": ("millimeter", "millimeters"),
    "kg": ("kilogram", "kilograms"),
    "mg": ("milligram", "milligrams"),
    "g": ("gram", "grams"),
    "lb": ("pound", "pounds"),
    "lbs": ("pound", "pounds"),
    "oz": ("ounce", "ounces"),
    "ml": ("milliliter", "milliliters"),
    "mL": ("milliliter", "milliliters"),
    "l": ("liter", "liters"),
    "L": ("liter", "liters"),
    "ft": ("foot", "feet"),
    "mi": ("mile", "miles"),
    "KB": ("kilobyte", "kilobytes"),
    "kB": ("kilobyte", "kilobytes"),
    "MB": ("megabyte", "megabytes"),
    "GB": ("gigabyte", "gigabytes"),
    "TB": ("terabyte", "terabytes"),
    "Mbps": ("megabit per second", "megabits per second"),
    "Gbps": ("gigabit per second", "gigabits per second"),
    "rpm": ("R P M", "R P M"),
    "fps": ("frame per second", "frames per second"),
    "Hz": ("hertz", "hertz"),
    "kHz": ("kilohertz", "kilohertz"),
    "MHz": ("megahertz", "megahertz"),
    "GHz": ("gigahertz", "gigahertz"),
    "ms": ("millisecond", "milliseconds"),
    "min": ("minute", "minutes"),
    "hrs": ("hour", "hours"),
    "W": ("watt", "watts"),
    "kW": ("kilowatt", "kilowatts"),
    "kWh": ("kilowatt hour", "kilowatt hours"),
    "V": ("volt", "volts"),
    "mAh": ("milliamp hour", "milliamp hours"),
    "°C": ("degree Celsius", "degrees Celsius"),
    "°F": ("degree Fahrenheit", "degrees Fahrenheit"),
    "°": ("degree", "degrees"),
}

# abbreviation -> spoken form; "." ends a sentence after these only when the next word is capitalised
_ABBREVIATIONS = {
    "Dr.": "Doctor",
    "Mr.": "Mister",
    "Mrs.": "Missus",
    "Ms.": "Miz",
    "Prof.": "Professor",
    "Jr.": "Junior",
    "Sr.": "Senior",
    "St.": "Saint",
    "Mt.": "Mount",
    "e.g.": "for example",
    "i.e.": "that is",
    "etc.": "et cetera",
    "vs.": "versus",
    "approx.": "approximately",
    "Inc.": "Incorporated",
    "Ltd.": "Limited",
    "Co.": "Company",
    "Jan.": "January",
    "Feb.": "February",
    "Aug.": "August",
    "Sept.": "September",
    "Oct.": "October",
    "Nov.": "November",
    "Dec.": "December",
}
_SENTENCE_FINAL_ABBREVIATIONS = {"etc.", "Inc.", "Ltd.", "Co.", "Jr.", "Sr."}

# "/hr" after an amount -> "an hour"; "/s" after a unit -> "per second"
_PERIODS = {"h": "hour", "hr": "hour", "hour": "hour", "mo": "month", "month": "month", "yr": "year", "year": "year", "d": "day", "day": "day", "wk": "week", "week": "week", "min": "minute", "minute": "minute", "s": "second", "sec": "second", "second": "second"}

_VULGAR_FRACTIONS = {"½": (1, 2), "⅓": (1, 3), "⅔": (2, 3), "¼": (1, 4), "¾": (3, 4), "⅕": (1, 5), "⅖": (2, 5), "⅗": (3, 5), "⅘": (4, 5), "⅙": (1, 6), "⅚": (5, 6), "⅛": (1, 8), "⅜": (3, 8), "⅝": (5, 8), "⅞": (7, 8)}

ACRONYMS_AS_WORDS = {
    "CUDA": "Cuda", "NVIDIA": "Nvidia", "NVENC": "N V enc", "NVDEC": "N V dec", "NASA": "Nasa", "NATO": "Nato", "RAM": "ram", "VRAM": "V ram",
    "DRAM": "D ram", "SRAM": "S ram", "ROM": "rom", "JSON": "Jason", "YAML": "yammel", "ONNX": "onyx", "GIF": "gif", "JPEG": "jay peg",
    "WAV": "wave", "ASCII": "askee", "LAN": "lan", "WAN": "wan", "RAID": "raid", "SIM": "sim", "PIN": "pin", "DAG": "dag", "GUI": "gooey",
    "SIMD": "sim D", "POSIX": "pozix", "UNIX": "unix", "WASM": "wasm", "CORS": "cors", "REST": "rest", "CRUD": "crud", "COVID": "covid",
    "OK": "okay", "LIDAR": "lidar", "RADAR": "radar", "LASER": "laser", "SCUBA": "scuba", "CAPTCHA": "captcha", "FAANG": "fang",
    "MIDI": "middy", "OPEC": "Opec", "FIFA": "Fifa", "UNESCO": "Unesco", "UNICEF": "Unicef", "IKEA": "Ikea", "AIDS": "aids",
}
"""Acronyms people say as a word, and how to write that word so a voice says it ("CUDA" -> Cuda)."""

SPELLED_ACRONYMS = {"GPU", "CPU", "TPU", "NPU", "API", "URL", "CLI", "SDK", "AI", "ML", "LLM", "TTS", "ASR", "SQL", "HTML", "CSS", "HTTP", "HTTPS", "AWS", "GCP", "VM", "SSD", "HDD", "USB", "HDMI", "PDF", "RSS", "CI", "CD", "LUFS", "NVML", "AAC", "MP3", "MP4", "SRT", "VTT", "WER", "RTF", "FPS", "UI", "UX", "ID", "IP", "DNS", "VPN", "PC", "US", "UK", "EU", "CEO", "CTO", "FAQ"}
"""Acronyms spelled letter by letter ("GPU" -> G P U). Any other capitalised word of two to five letters
is spelled too, unless it is in :data:`ACRONYMS_AS_WORDS` or is an English word written in capitals for
emphasis (``_CAPITALISED_WORDS``); longer ones are spelled only when listed here."""

_CAPITALISED_WORDS = {
    "NO", "NOT", "SO", "DO", "WE", "HE", "ME", "MY", "BE", "GO", "OF", "ON", "OR", "IN", "IS", "TO", "AN", "AT", "BY", "UP", "ALL", "AND",
    "THE", "YES", "BUT", "FOR", "YOU", "ARE", "WAS", "NOW", "NEW", "BIG", "HOT", "HOW", "WHY", "WHO", "WHAT", "THIS", "THAT", "VERY",
    "NEVER", "EVER", "EVERY", "STOP", "WAIT", "WOW", "HUGE", "JUST", "MUCH", "MORE", "MOST", "LESS", "ONLY", "ONE", "TWO", "FREE",
    "HELP", "NEED", "MUST", "WILL", "CAN", "DID", "HAS", "HAD", "HAVE", "BEST", "GOOD", "BAD", "LOVE", "HATE", "REAL", "SURE",
}

_VERSIONED_NAMES = "Python|Node|Ubuntu|Debian|Fedora|CUDA|cuDNN|PyTorch|Torch|TensorFlow|Java|iOS|iPadOS|macOS|Android|Windows|Firefox|Chrome|Kubernetes|Go|Rust|Django|Flask|Prefect|Ruby|PHP|Perl|Linux|kernel|version|Version|release|Release|GPT|Llama|Gemma|Qwen|Mistral|Claude|Gemini|Phi|Whisper|Blender"

_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"]
_TOP_LEVEL_DOMAINS = "com|org|net|edu|gov|io|dev|ai|app|co|uk|de|fr|eu|fm|tv|info|me"

_URL_SYMBOLS = {".": " dot ", "/": " slash ", "-": " dash ", "_": " underscore ", "?": " question mark ", "=": " equals ", "&": " and ", "#": " hash ", "~": " tilde ", ":": " colon ", "+": " plus ", "@": " at ", "%": " percent "}


class Rewrite(NamedTuple):
    """A stretch of the script (whole words) and what is said for it."""

    written: str
    spoken: str


def normalize_text(text: str, language: str = "en") -> str:
    """``text`` with numbers, money, units, times, abbreviations, URLs and e-mails written as spoken."""
    return _normalized(text, language).text


def normalize_segments(text: str, language: str = "en") -> list[Rewrite]:
    """``text`` cut into the smallest runs of whole written words whose spoken form is their own.

    Each written word belongs to exactly one segment, in order; a rewrite that spans several words
    ("3:30 pm" -> "three thirty p m") makes one segment of them. The spoken parts joined by spaces are
    :func:`normalize_text`'s result.
    """
    tracked = _normalized(text, language)
    written = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    written_starts, written_ends = [start for start, _ in written], [end for _, end in written]
    groups: list[list] = []  # [first written word, last written word, spoken words]
    for token in re.finditer(r"\S+", tracked.text):
        origin_start = min(tracked.starts[token.start() : token.end()])
        origin_end = max(tracked.ends[token.start() : token.end()])
        first = bisect.bisect_right(written_ends, origin_start)
        last = max(first, bisect.bisect_left(written_starts, origin_end) - 1)
        first, last = min(first, len(written) - 1), min(last, len(written) - 1)
        if groups and first <= groups[-1][1]:
            groups[-1][1] = max(groups[-1][1], last)
            groups[-1][2].append(token.group())
            continue
        for silent in range(groups[-1][1] + 1 if groups else 0, first):  # written words that say nothing
            groups.append([silent, silent, []])
        groups.append([first, last, [token.group()]])
    for silent in range(groups[-1][1] + 1 if groups else 0, len(written)):
        groups.append([silent, silent, []])
    return [Rewrite(" ".join(text[a:b] for a, b in written[first : last + 1]), " ".join(spoken)) for first, last, spoken in groups]


def rewrites(text: str, language: str = "en") -> list[Rewrite]:
    """Where what is said differs from the script: (script text, spoken text) pairs, in order."""
    return [segment for segment in normalize_segments(text, language) if segment.written != segment.spoken]


def spoken_word_count(spoken: str) -> int:
    """Words a voice says for ``spoken``: whitespace-separated pieces with a letter or digit in them."""
    return sum(1 for piece in spoken.split() if re.search(r"\w", piece))


def time_written_words(text: str, spoken_times: Sequence[tuple[float, float]], language: str = "en") -> list[tuple[str, float, float]]:
    """(word, start, end) for each written word of ``text`` from the times of its spoken words.

    ``spoken_times`` holds one (start, end) per spoken word of ``normalize_text(text, language)``, in
    order (see :func:`spoken_word_count`). A written word is shown from its first spoken word's start to
    its last one's end ("$4/hr" for all of "four dollars an hour"); words of one rewrite ("3:30 pm") share
    its span by length. A word that says nothing ("—") gets an instant at the previous word's end. If the
    count does not match, the spoken words are laid over the given time in proportion to their length.
    """
    segments = normalize_segments(text, language)
    counts = [spoken_word_count(segment.spoken) for segment in segments]
    if not spoken_times or not segments:
        return []
    if sum(counts) != len(spoken_times):
        spoken_times = _spread_over(spoken_times, [len(word) + 1 for segment in segments for word in segment.spoken.split() if re.search(r"\w", word)])
    timed: list[tuple[str, float, float]] = []
    cursor, previous_end = 0, spoken_times[0][0]
    for segment, count in zip(segments, counts):
        words = segment.written.split()
        if count == 0:
            timed += [(word, previous_end, previous_end) for word in words]
            continue
        start, end = spoken_times[cursor][0], spoken_times[cursor + count - 1][1]
        cursor += count
        bounds = _share(start, end, [len(word) + 1 for word in words])
        timed += [(word, bounds[i], bounds[i + 1]) for i, word in enumerate(words)]
        previous_end = end
    return timed


def _share(start: float, end: float, weights: list[int]) -> list[float]:
    """``start``, the bounds between the weighted shares of [start, end], and ``end`` (exactly)."""
    total, bounds, acc = sum(weights), [start], 0
    for weight in weights[:-1]:
        acc += weight
        bounds.append(start + (end - start) * acc / total)
    return [*bounds, end]


def _spread_over(times: Sequence[tuple[float, float]], weights: list[int]) -> list[tuple[float, float]]:
    """``len(weights)`` word spans laid end to end over the time in ``times`` (its gaps skipped)."""
    lengths = [end - start for start, end in times]
    total = sum(lengths)
    if not weights:
        return []
    if total <= 0:
        return [(times[0][0], times[-1][1])] * len(weights)

    def at(position: float) -> float:
        for (start, end), length in zip(times, lengths):
            if position <= length:
                return start + position
            position -= length
        return times[-1][1]

    bounds = _share(0.0, total, weights)
    return [(at(bounds[i]), at(bounds[i + 1])) for i in range(len(weights))]


class _Tracked:
    """Text being rewritten, remembering for each character the span of the original it came from."""

    def __init__(self, text: str):
        self.text = text
        self.starts = list(range(len(text)))
        self.ends = list(range(1, len(text) + 1))

    def sub(self, pattern: re.Pattern[str], replace: Callable[[re.Match], str] | str) -> None:
        pieces: list[str] = []
        starts: list[int] = []
        ends: list[int] = []
        last = 0
        for match in pattern.finditer(self.text):
            begin, finish = match.span()
            spoken = replace(match) if callable(replace) else match.expand(replace)
            if spoken == match.group(0):
                continue
            pieces.append(self.text[last:begin])
            starts += self.starts[last:begin]
            ends += self.ends[last:begin]
            written = match.group(0)
            kept_head, kept_tail = _shared_words(written, spoken)
            starts += self.starts[begin : begin + kept_head]
            ends += self.ends[begin : begin + kept_head]
            inner_begin, inner_finish = begin + kept_head, finish - kept_tail
            if inner_finish > inner_begin:
                origin = (min(self.starts[inner_begin:inner_finish]), max(self.ends[inner_begin:inner_finish]))
            elif inner_begin < len(self.text):
                origin = (self.starts[inner_begin], self.starts[inner_begin])
            else:
                origin = (self.ends[-1], self.ends[-1]) if self.ends else (0, 0)
            changed = len(spoken) - kept_head - kept_tail
            starts += [origin[0]] * changed
            ends += [origin[1]] * changed
            starts += self.starts[finish - kept_tail : finish]
            ends += self.ends[finish - kept_tail : finish]
            pieces.append(spoken)
            last = finish
        if not pieces:
            return
        pieces.append(self.text[last:])
        self.text = "".join(pieces)
        self.starts = starts + self.starts[last:]
        self.ends = ends + self.ends[last:]

    def strip(self) -> None:
        left = len(self.text) - len(self.text.lstrip())
        right = len(self.text.rstrip())
        self.text, self.starts, self.ends = self.text[left:right], self.starts[left:right], self.ends[left:right]


def _shared_words(written: str, spoken: str) -> tuple[int, int]:
    """How many characters of whole words ``written`` and ``spoken`` share at their start and at their
    end ("Python 3.11" and "Python three point eleven" share "Python "), so those keep their origin."""
    limit = min(len(written), len(spoken))
    head = 0
    while head < limit and written[head] == spoken[head]:
        head += 1
    if not (head == len(written) and (head == len(spoken) or spoken[head] == " ")):
        head = written.rfind(" ", 0, head) + 1  # back to the start of a word
    tail = 0
    while tail < limit - head and written[-1 - tail] == spoken[-1 - tail]:
        tail += 1
    if tail < len(written) - head:
        space = written.find(" ", len(written) - tail)  # forward to the space before a word
        tail = len(written) - space if space >= 0 else 0
    return head, tail


def _normalized(text: str, language: str) -> _Tracked:
    tracked = _Tracked(text)
    lang = language.split("-")[0].split("_")[0].lower()
    if lang == "en":
        for pattern, replace in _ENGLISH_PASSES:
            tracked.sub(pattern, replace)
    elif lang in CONVERTER_CLASSES:
        tracked.sub(_OTHER_LANGUAGE_NUMBER, lambda m: _other_language_number(m, lang))
    tracked.sub(_SPACES, " ")
    tracked.strip()
    return tracked


def cardinal(number: str | int | float, lang: str = "en") -> str:
    """A number as words, without the grouping commas ``num2words`` puts in (they read as pauses)."""
    value = _parse_number(number) if isinstance(number, str) else number
    return num2words(value, lang=lang).replace(",", "")


def _parse_number(written: str) -> int | float:
    plain = written.replace(",", "")
    return float(plain) if "." in plain else int(plain)


def _decimal(written: str) -> str:
    """"3.14" -> "three point one four" (digits after the point one by one, as people read them)."""
    whole, _, fraction = written.replace(",", "").partition(".")
    spoken = cardinal(int(whole))
    if fraction:
        spoken += " point " + " ".join(cardinal(int(digit)) for digit in fraction)
    return spoken


def _is_one(written: str) -> bool:
    return _parse_number(written) == 1


# --- the English passes, in order -------------------------------------------------------------------


def _url(match: re.Match) -> str:
    url = re.sub(r"^[a-z][a-z0-9+.-]*://", "", match.group(0), flags=re.I).rstrip("/")
    url = re.sub(r"^www\.", "w w w.", url, flags=re.I)
    return _spell_address(url)


def _email(match: re.Match) -> str:
    """An e-mail address or a bare domain ("podforge.dev/docs"), symbol by symbol."""
    return _spell_address(match.group(0).rstrip("/"))


def _spell_address(address: str) -> str:
    spoken = "".join(_URL_SYMBOLS.get(char, char) for char in address)
    spoken = re.sub(r"\d+", lambda m: " " + cardinal(m.group(0)) + " ", spoken)
    return " ".join(spoken.split())


def _time(match: re.Match) -> str:
    hours, minutes, meridiem = int(match.group(1)), int(match.group(2)), match.group(3)
    spoken = cardinal(hours)
    if minutes == 0:
        spoken += "" if meridiem else " o'clock" if hours <= 12 else " hundred"
    elif minutes < 10:
        spoken += " oh " + cardinal(minutes)
    else:
        spoken += " " + cardinal(minutes)
    return spoken + _meridiem(match, meridiem)


def _hour_meridiem(match: re.Match) -> str:
    return cardinal(int(match.group(1))) + _meridiem(match, match.group(2))


def _meridiem(match: re.Match, written: str | None) -> str:
    """" p m", keeping the full stop of "p.m." when it also ends the sentence."""
    if not written:
        return ""
    spoken = " " + " ".join(written.replace(".", "").lower())
    following = match.string[match.end() :]
    if written.endswith(".") and (not following.strip() or re.match(r"\s+[A-Z]", following)):
        spoken += "."
    return spoken


def _iso_date(match: re.Match) -> str:
    year, month, day = (int(part) for part in match.groups())
    return f"{_MONTHS[month - 1]} {num2words(day, to='ordinal')} {num2words(year, to='year')}"


def _month_day(match: re.Match) -> str:
    return f"{match.group(1)} {num2words(int(match.group(2)), to='ordinal')}"


def _money(match: re.Match) -> str:
    """"$4" and "20€", ranges ("$15–$30": fifteen to thirty dollars) and rates ("$4/hr": an hour)."""
    groups = match.groupdict()
    singular, plural, minor_singular, minor_plural = _CURRENCIES[groups.get("symbol") or groups["after"]]
    first, first_scale = groups["amount"], groups["scale"] or None
    second, second_scale = groups["amount2"], groups["scale2"] or None
    if second is None:
        spoken = _amount(first, first_scale, (singular, plural, minor_singular, minor_plural))
    elif _has_cents(first) or _has_cents(second):
        spoken = f"{_amount(first, first_scale, (singular, plural, minor_singular, minor_plural))} to {_amount(second, second_scale, (singular, plural, minor_singular, minor_plural))}"
    else:
        low = _money_number(first) + (f" {_SCALES[first_scale]}" if first_scale and first_scale != second_scale else "")
        high = _money_number(second) + (f" {_SCALES[second_scale]}" if second_scale else "")
        spoken = f"{low} to {high} {plural}"
    return spoken + (_rate(match) if match.group("per") else "")


def _amount(amount: str, scale: str | None, names: tuple[str, str, str, str]) -> str:
    singular, plural, minor_singular, minor_plural = names
    if scale:
        return f"{_decimal(amount)} {_SCALES[scale]} {plural}"
    whole, _, fraction = amount.replace(",", "").partition(".")
    if len(fraction) > 2:  # a rate such as $0.125: read as a decimal
        return f"{_decimal(amount)} {plural}"
    major, minor = int(whole), int((fraction + "00")[:2]) if fraction else 0
    if major == 0 and minor:
        return f"{cardinal(minor)} {minor_singular if minor == 1 else minor_plural}"
    spoken = f"{cardinal(major)} {singular if major == 1 else plural}"
    return f"{spoken} {cardinal(minor)}" if minor else spoken


def _has_cents(amount: str) -> bool:
    fraction = amount.partition(".")[2]
    return bool(fraction) and int(fraction) != 0


def _money_number(amount: str) -> str:
    whole, _, fraction = amount.replace(",", "").partition(".")
    return _decimal(amount) if fraction and int(fraction) else cardinal(int(whole))


def _rate(match: re.Match) -> str:
    """" an hour" for "/hr" (a period), " per gigabyte" for "/GB", " per million tokens" for "/1M tokens"."""
    unit, count, scale = match.group("per_unit"), match.group("per_count"), match.group("per_scale")
    if count is None and unit in _PERIODS:
        period = _PERIODS[unit]
        return f" {'an' if period[0] in 'aeiou' or period == 'hour' else 'a'} {period}"
    quantity = ""
    if count is not None:
        quantity = ("" if _is_one(count) and scale else _decimal(count) + " ") + (_SCALES[scale] + " " if scale else "")
    singular_unit = _UNITS[unit][0] if unit in _UNITS and not quantity else _UNITS[unit][1] if unit in _UNITS else _PERIODS.get(unit, unit)
    return f" per {quantity}{singular_unit}"


def _period(match: re.Match) -> str:
    return " per " + _PERIODS[match.group(1)]


def _dimensions(match: re.Match) -> str:
    """"2x2" -> two by two, "1920x1080" -> nineteen twenty by ten eighty."""
    return " by ".join(num2words(int(side), to="year") if len(side) == 4 and int(side) % 100 else cardinal(int(side)) for side in match.groups())


def _multiplier(match: re.Match) -> str:
    return ("minus " if match.group(1) else "") + _decimal(match.group(2)) + " times"


def _scaled(match: re.Match) -> str:
    """"1.5k" -> one point five thousand, "7B" -> seven billion; "4K" is read as the letter (four K)."""
    sign, amount, scale = match.group(1), match.group(2), match.group(3)
    spoken = _decimal(amount) + " " + ("K" if scale == "K" else _SCALES[scale])
    return ("minus " if sign else "") + spoken


def _quantity_range(match: re.Match) -> str:
    """"5-10 ms" -> five to ten milliseconds, "10–20%" -> ten to twenty percent, "2020–2024" as years."""
    low, low_suffix, high, high_suffix = match.group("low"), match.group("low_suffix"), match.group("high"), match.group("high_suffix")
    if not low_suffix and not high_suffix:
        return f"{_number_word(low)} to {_number_word(high)}"
    if low_suffix and high_suffix and low_suffix.strip() != high_suffix.strip():
        return f"{_with_suffix(low, low_suffix)} to {_with_suffix(high, high_suffix)}"
    return f"{_decimal(low)} to {_with_suffix(high, high_suffix or low_suffix)}"


def _with_suffix(amount: str, suffix: str) -> str:
    suffix = suffix.strip()
    if suffix == "%":
        return f"{_decimal(amount)} percent"
    if suffix in ("x", "×"):
        return f"{_decimal(amount)} times"
    if suffix in _UNITS:
        singular, plural = _UNITS[suffix]
        return f"{_decimal(amount)} {singular if _is_one(amount) else plural}"
    return f"{_decimal(amount)} {'K' if suffix == 'K' else _SCALES[suffix]}"


def _version(match: re.Match) -> str:
    """"v2.1.0" -> version two point one point zero; "Python 3.11" -> Python three point eleven."""
    name, written = match.group("name"), match.group("version")
    parts = [("oh " + cardinal(int(part)) if len(part) > 1 and part.startswith("0") else cardinal(int(part))) for part in written.split(".")]
    spoken = " point ".join(parts)
    if name in ("v", "V"):
        return f"version {spoken}"
    return f"{name} {spoken}" if name else spoken


def _code(match: re.Match) -> str:
    """"torch.cuda.is_available()" -> torch dot cuda dot is available; "snake_case" -> snake case."""
    written = match.group(0)
    call = written.endswith("()")
    parts = written.removesuffix("()").split(".")
    if len(parts) > 1 and not call and any(len(part) < 2 for part in parts):
        return written  # "e.g", "U.S": initials, not code
    words = [re.sub(r"(?<=[a-z0-9])([A-Z])(?=[a-z])", lambda m: " " + m.group(1).lower(), part).replace("_", " ").strip() for part in parts]
    return " dot ".join(word for word in words if word)


def _fraction(match: re.Match) -> str:
    """"3/4" -> three quarters, "1 1/2" -> one and a half, "9/10" -> nine out of ten, "24/7", "50/50"."""
    whole, numerator, denominator = match.group(1), int(match.group(2)), int(match.group(3))
    if whole is None and (numerator, denominator) == (24, 7):
        return "twenty-four seven"
    if whole is None and numerator == denominator:
        return f"{cardinal(numerator)} {cardinal(denominator)}"
    if not 2 <= denominator <= 9:
        spoken = f"{cardinal(numerator)} out of {cardinal(denominator)}"
        return f"{cardinal(whole)} and {spoken}" if whole else spoken
    return _fraction_words(numerator, denominator, whole)


def _fraction_words(numerator: int, denominator: int, whole: str | None = None) -> str:
    name = {2: ("half", "halves"), 4: ("quarter", "quarters")}.get(denominator)
    if name is None:
        ordinal = num2words(denominator, to="ordinal")
        name = (ordinal, ordinal + "s")
    if whole:
        return f"{cardinal(whole)} and {'a' if numerator == 1 else cardinal(numerator)} {name[0] if numerator == 1 else name[1]}"
    return f"{cardinal(numerator)} {name[0] if numerator == 1 else name[1]}"


def _vulgar_fraction(match: re.Match) -> str:
    numerator, denominator = _VULGAR_FRACTIONS[match.group(2)]
    return _fraction_words(numerator, denominator, match.group(1))


def _acronym(match: re.Match) -> str:
    """"GPU" -> G P U, "GPUs" -> G P U's, "A100" -> A one hundred, "GPT-4" -> G P T four, "RTX 4090" ->
    R T X forty ninety; "CUDA" is read as a word (:data:`ACRONYMS_AS_WORDS`)."""
    written, plural, suffix, model = match.group("acronym"), match.group("plural"), match.group("suffix"), match.group("model")
    letters_only = written.isalpha()
    if (
        written in _CAPITALISED_WORDS
        or (letters_only and written not in ACRONYMS_AS_WORDS and written not in SPELLED_ACRONYMS and len(written) > 5)
        or re.fullmatch(r"[IVX]{2,4}", written)  # a Roman numeral: World War II
        or _is_shouted(match.string)
    ):
        return match.group(0)
    if written in ACRONYMS_AS_WORDS:
        pieces = [ACRONYMS_AS_WORDS[written]]
    else:
        pieces = [cardinal(int(run)) if run.isdigit() else ACRONYMS_AS_WORDS.get(run, " ".join(run)) for run in re.findall(r"[A-Z]+|\d+", written)]
    spoken = " ".join(pieces) + ("'s" if plural else "")
    if suffix:
        spoken += " " + cardinal(int(suffix))
    if model:
        spoken += " " + (num2words(int(model), to="year") if int(model) % 100 else cardinal(int(model)))
    return spoken


def _is_shouted(text: str) -> bool:
    """A text in capitals throughout ("THIS IS HUGE") is emphasis, not acronyms."""
    return not re.search(r"[a-z]", text) and len(text.split()) >= 3


def _percent(match: re.Match) -> str:
    sign, amount = match.group(1), match.group(2)
    return ("minus " if sign else "") + _decimal(amount) + " percent"


def _unit(match: re.Match) -> str:
    sign, amount, unit = match.group(1), match.group(2), match.group(3)
    singular, plural = _UNITS[unit]
    return ("minus " if sign else "") + _decimal(amount) + " " + (singular if _is_one(amount) else plural)


def _decade(match: re.Match) -> str:
    century, decade = match.group(1), match.group(2)
    tens = cardinal(int(decade))
    plural_tens = tens[:-1] + "ies" if tens.endswith("y") else tens + "s"
    if decade == "00":
        return cardinal(int(century + "00"), "en") + "s"
    return (cardinal(int(century)) + " " if century else "") + plural_tens


def _ordinal(match: re.Match) -> str:
    return num2words(int(match.group(1)), to="ordinal").replace(",", "")


def _year(match: re.Match) -> str:
    return num2words(int(match.group(0)), to="year").replace(",", "")


def _number_word(written: str) -> str:
    """A year as a year ("2024": twenty twenty-four), any other number as a number."""
    if re.fullmatch(r"1[1-9]\d\d|20\d\d", written):
        return num2words(int(written), to="year")
    return _decimal(written)


def _number(match: re.Match) -> str:
    sign, amount = match.group(1), match.group(2)
    return ("minus " if sign else "") + _decimal(amount)


def _abbreviation(match: re.Match) -> str:
    written = match.group(1)
    spoken = _ABBREVIATIONS[written]
    following = match.string[match.end() :]
    if written in _SENTENCE_FINAL_ABBREVIATIONS and (not following.strip() or re.match(r"\s+[A-Z]", following)):
        spoken += "."
    return spoken


def _street(match: re.Match) -> str:
    """"St." after a capitalised name and not before one is Street ("Main St."), else Saint."""
    return f"{match.group(1)} Street" + ("." if not match.string[match.end() :].strip() else "")


def _other_language_number(match: re.Match, lang: str) -> str:
    """A number in another language: "." or "," before exactly three digits groups thousands, else it
    is the decimal separator ("1.000" is a thousand, "3,5" three and a half)."""
    written = match.group(2)
    *groups, last = re.split(r"[.,]", written)
    if not groups:
        value: int | float = int(last)
    elif len(last) == 3 and all(len(group) == 3 for group in groups[1:]):
        value = int("".join([*groups, last]))
    else:
        value = float("".join(groups) + "." + last)
    return num2words(-value if match.group(1) else value, lang=lang).replace(",", "")


_OTHER_LANGUAGE_NUMBER = re.compile(r"(?<![\w.,])(-?)(\d+(?:[.,]\d+)*)(?![\w])")
_SPACES = re.compile(r"[ \t]{2,}")
_ABBREVIATION_PATTERN = "|".join(re.escape(a) for a in sorted(_ABBREVIATIONS, key=len, reverse=True))
_UNIT_PATTERN = "|".join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True))
_CURRENCY_PATTERN = "|".join(re.escape(c) for c in sorted(_CURRENCIES, key=len, reverse=True))
_SCALE_PATTERN = "|".join(sorted(_SCALES, key=len, reverse=True))
_SIGN = r"(?<![\w.])(-|−)?"
_MERIDIEM = r"([AaPp]\.?[Mm]\.?)(?![\w])"

_SCALE_SUFFIX = "k|K|M|B|bn|mn|tn"
_QUANTITY_SUFFIX = rf"\s?%|\s?(?:{_UNIT_PATTERN})|[x×]|{_SCALE_SUFFIX}"
_PER = rf"(?P<per>/(?=[\dA-Za-z])(?:(?P<per_count>{_NUMBER})\s?(?P<per_scale>{_SCALE_SUFFIX})?)?\s?(?P<per_unit>[A-Za-z]+)?(?![\w]))?"
_MONEY_RANGE = rf"(?:\s?[-–—]\s?(?:{_CURRENCY_PATTERN})?\s?(?P<amount2>{_NUMBER})(?:\s?(?P<scale2>{_SCALE_PATTERN})\b)?)?"
_VERSION_END = r"(?![\w]|\.\d)"

_ENGLISH_PASSES: list[tuple[re.Pattern[str], Callable[[re.Match], str] | str]] = [
    (re.compile(r"\b(?:https?://|www\.)[^\s<>\"']+?(?=[.,;:!?)\]]*(?:\s|$))", re.I), _url),
    (re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"), _email),
    (re.compile(rf"\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:{_TOP_LEVEL_DOMAINS})\b(?:/[^\s]*?)?(?=[.,;:!?)\]]*(?:\s|$))", re.I), _email),
    (re.compile(r"(?<![\w.@/-])(?:(?:[A-Za-z_]\w*\.)+[A-Za-z_]\w*(?:\(\))?|[A-Za-z_]\w*\(\)|[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)+)(?![\w(])"), _code),
    (re.compile(r"\bH\.(26[1-6])\b"), lambda m: f"H two {cardinal(int(m.group(1)) - 200)}"),  # video codecs: H.264
    (re.compile(r"\b(1[1-9]\d\d|20\d\d)-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])\b"), _iso_date),
    (re.compile(rf"\b({'|'.join(_MONTHS)})\s+([12]?\d|3[01])(?:st|nd|rd|th)?\b"), _month_day),
    (re.compile(rf"\b([01]?\d|2[0-3]):([0-5]\d)(?:\s*{_MERIDIEM})?"), _time),
    (re.compile(rf"\b(1[0-2]|[1-9])\s*{_MERIDIEM}"), _hour_meridiem),
    (re.compile(rf"(?<![\w.])(?P<name>[vV])(?P<version>\d+(?:\.\d+)*){_VERSION_END}"), _version),
    (re.compile(rf"\b(?P<name>{_VERSIONED_NAMES})\s+(?P<version>\d+\.\d+(?:\.\d+)*){_VERSION_END}"), _version),
    (re.compile(rf"(?<![\w.])(?P<name>)(?P<version>\d+\.\d+\.\d+(?:\.\d+)*){_VERSION_END}"), _version),
    (re.compile(rf"(?P<symbol>{_CURRENCY_PATTERN})\s?(?P<amount>{_NUMBER})(?:\s?(?P<scale>{_SCALE_PATTERN})\b)?{_MONEY_RANGE}{_PER}"), _money),
    (re.compile(rf"(?<![\w.])(?P<amount>{_NUMBER})(?P<scale>)(?:\s?[-–—]\s?(?P<amount2>{_NUMBER})(?P<scale2>))?\s?(?P<after>[€£]){_PER}"), _money),
    (re.compile(rf"(?<![\w.$€£¥₹-])(?P<low>{_NUMBER})(?P<low_suffix>{_QUANTITY_SUFFIX})?\s?[-–—]\s?(?P<high>{_NUMBER})(?P<high_suffix>{_QUANTITY_SUFFIX})?(?![\w])"), _quantity_range),
    (re.compile(rf"{_SIGN}({_NUMBER})\s?%"), _percent),
    (re.compile(rf"{_SIGN}({_NUMBER})\s?({_UNIT_PATTERN})(?![\w])"), _unit),
    (re.compile(r"(?<![\w.])(\d+)\s?[x×]\s?(\d+)(?![\w.])"), _dimensions),
    (re.compile(rf"{_SIGN}({_NUMBER})\s?[x×](?![\w])"), _multiplier),
    (re.compile(rf"{_SIGN}({_NUMBER})({_SCALE_SUFFIX})(?![\w])"), _scaled),
    (re.compile(rf"(?<=[A-Za-z])/({'|'.join(_PERIODS)})\b"), _period),
    (re.compile(r"(?<![\w'’])(?:'|’)?(1[0-9]|20)?(\d0)'?s\b"), _decade),
    (re.compile(r"\b(\d+)(?:st|nd|rd|th)\b"), _ordinal),
    (re.compile(r"\b([A-Z][a-z]+) St\.(?!\s+[A-Z])"), _street),
    (re.compile(rf"(?<![\w.])({_ABBREVIATION_PATTERN})(?=\s|$|[,;:])"), _abbreviation),
    (re.compile(r"(?<![\w.])No\.\s?(?=\d)"), "number "),
    (re.compile(r"(?<![\w&])#(?=\d)"), "number "),
    (re.compile(rf"(?:(?<![\w.])(\d+)\s?)?([{''.join(_VULGAR_FRACTIONS)}])"), _vulgar_fraction),
    (re.compile(r"(?<![\w/.])(?:(\d+)\s)?(\d+)/(\d+)(?![\w/]|\.\d)"), _fraction),
    (re.compile(r"(?<![\w'’.-])(?P<acronym>[A-Z][A-Z0-9]+)(?P<plural>s|'s|’s)?(?:-(?P<suffix>\d+))?(?:\s(?P<model>\d{4})(?!\w|[.,]\d))?(?![\w'’])"), _acronym),
    (re.compile(r"(?<![\d,.])(1[1-9]\d\d|20\d\d)(?!\d|[,.]\d)"), _year),
    (re.compile(rf"{_SIGN}({_NUMBER})(?![\w])"), _number),
    (re.compile(r"\s&\s"), " and "),
]


def split_sentences(text: str, max_chars: int = 250) -> list[str]:
    """``text`` as sentences of at most ``max_chars`` characters, for engines that speak one at a time.

    A full stop ends a sentence unless it closes an abbreviation ("Dr.", "e.g.") or an initial ("J.") or
    the next word starts in lower case. A sentence longer than ``max_chars`` is cut at its last comma,
    semicolon or colon that fits, else at a space. Pieces without a letter or digit are dropped.
    """
    sentences: list[str] = []
    start = 0
    for boundary in re.finditer(r"(?<=[.!?…])[\"'”’)\]]*\s+", text):
        before = text[start : boundary.start()].split()[-1] if text[start : boundary.start()].split() else ""
        following = text[boundary.end() : boundary.end() + 1]
        if before in _ABBREVIATIONS and before not in _SENTENCE_FINAL_ABBREVIATIONS or re.fullmatch(r"[A-Z]\.", before) or following.islower():
            continue
        sentences.append(text[start : boundary.end()].strip())
        start = boundary.end()
    sentences.append(text[start:].strip())
    pieces = [piece for sentence in sentences for piece in _cut(sentence, max_chars)]
    return [piece for piece in pieces if re.search(r"\w", piece)]


def _cut(sentence: str, max_chars: int) -> list[str]:
    pieces: list[str] = []
    while len(sentence) > max_chars:
        window = sentence[: max_chars + 1]
        cut = max(window.rfind(", "), window.rfind("; "), window.rfind(": "))
        cut = cut + 1 if cut > 0 else window.rfind(" ")
        if cut <= 0:
            cut = max_chars
        pieces.append(sentence[:cut].strip())
        sentence = sentence[cut:].strip()
    return [*pieces, sentence]
