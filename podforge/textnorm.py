"""Text normalisation before speech: write out what a person would say.

TTS models read "$1.50", "3:30 pm", "25°C" or "https://podforge.dev/docs" badly or not at all. This
module rewrites such tokens as words ("one dollar fifty", "three thirty p m", "twenty-five degrees
Celsius", "podforge dot dev slash docs") with ordered regular-expression passes: the most specific
patterns (URLs, e-mail addresses, times, money) run before the general ones (numbers), so a number
inside a URL or a price is read as part of it.

English (``en``) gets the full set of rules. Other languages get their numbers read by ``num2words`` in
that language and are otherwise left as written; a language ``num2words`` does not know is returned
unchanged, for the TTS engine to read as it can.
"""

from __future__ import annotations

import re
from collections.abc import Callable

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

_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"]
_TOP_LEVEL_DOMAINS = "com|org|net|edu|gov|io|dev|ai|app|co|uk|de|fr|eu|fm|tv|info|me"

_URL_SYMBOLS = {".": " dot ", "/": " slash ", "-": " dash ", "_": " underscore ", "?": " question mark ", "=": " equals ", "&": " and ", "#": " hash ", "~": " tilde ", ":": " colon ", "+": " plus ", "@": " at ", "%": " percent "}


def normalize_text(text: str, language: str = "en") -> str:
    """``text`` with numbers, money, units, times, abbreviations, URLs and e-mails written as spoken."""
    lang = language.split("-")[0].split("_")[0].lower()
    if lang == "en":
        for pattern, replace in _ENGLISH_PASSES:
            text = pattern.sub(replace, text)
    elif lang in CONVERTER_CLASSES:
        text = re.sub(r"(?<![\w.,])(-?)(\d+(?:[.,]\d+)*)(?![\w])", lambda m: _other_language_number(m, lang), text)
    return re.sub(r"[ \t]{2,}", " ", text).strip()


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
    amount, scale = match.group("amount") or match.group("amount_first"), match.group("scale")
    singular, plural, minor_singular, minor_plural = _CURRENCIES[match.group("symbol") or match.group("after")]
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


def _range(match: re.Match) -> str:
    return f"{_number_word(match.group(1))} to {_number_word(match.group(2))}"


def _number_word(written: str) -> str:
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


_ABBREVIATION_PATTERN = "|".join(re.escape(a) for a in sorted(_ABBREVIATIONS, key=len, reverse=True))
_UNIT_PATTERN = "|".join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True))
_CURRENCY_PATTERN = "|".join(re.escape(c) for c in sorted(_CURRENCIES, key=len, reverse=True))
_SCALE_PATTERN = "|".join(sorted(_SCALES, key=len, reverse=True))
_SIGN = r"(?<![\w.])(-|−)?"
_MERIDIEM = r"([AaPp]\.?[Mm]\.?)(?![\w])"

_ENGLISH_PASSES: list[tuple[re.Pattern[str], Callable[[re.Match], str] | str]] = [
    (re.compile(r"\b(?:https?://|www\.)[^\s<>\"']+?(?=[.,;:!?)\]]*(?:\s|$))", re.I), _url),
    (re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"), _email),
    (re.compile(rf"\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:{_TOP_LEVEL_DOMAINS})\b(?:/[^\s]*?)?(?=[.,;:!?)\]]*(?:\s|$))", re.I), _email),
    (re.compile(r"\b(1[1-9]\d\d|20\d\d)-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])\b"), _iso_date),
    (re.compile(rf"\b({'|'.join(_MONTHS)})\s+([12]?\d|3[01])(?:st|nd|rd|th)?\b"), _month_day),
    (re.compile(rf"\b([01]?\d|2[0-3]):([0-5]\d)(?:\s*{_MERIDIEM})?"), _time),
    (re.compile(rf"\b(1[0-2]|[1-9])\s*{_MERIDIEM}"), _hour_meridiem),
    (re.compile(rf"(?:(?P<symbol>{_CURRENCY_PATTERN})\s?(?P<amount>{_NUMBER})|(?<![\w.])(?P<amount_first>{_NUMBER})\s?(?P<after>[€£]))(?:\s?(?P<scale>{_SCALE_PATTERN})\b)?"), _money),
    (re.compile(rf"{_SIGN}({_NUMBER})\s?%"), _percent),
    (re.compile(rf"{_SIGN}({_NUMBER})\s?({_UNIT_PATTERN})(?![\w])"), _unit),
    (re.compile(r"(?<![\w'’])(?:'|’)?(1[0-9]|20)?(\d0)'?s\b"), _decade),
    (re.compile(r"\b(\d+)(?:st|nd|rd|th)\b"), _ordinal),
    (re.compile(r"\b([A-Z][a-z]+) St\.(?!\s+[A-Z])"), _street),
    (re.compile(rf"(?<![\w.])({_ABBREVIATION_PATTERN})(?=\s|$|[,;:])"), _abbreviation),
    (re.compile(r"(?<![\w.])No\.\s?(?=\d)"), "number "),
    (re.compile(r"(?<![\w&])#(?=\d)"), "number "),
    (re.compile(r"\b(\d+(?:\.\d+)?)\s?[-–—]\s?(\d+(?:\.\d+)?)\b"), _range),
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
