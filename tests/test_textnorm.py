"""Text normalisation: what a person would say, case by case, and sentence splitting for TTS chunks."""

from __future__ import annotations

import pytest

from podforge.textnorm import normalize_text, split_sentences

ENGLISH_CASES = [
    # money
    ("It costs $1.50 today.", "It costs one dollar fifty today."),
    ("$1", "one dollar"),
    ("$2.00", "two dollars"),
    ("$0.99", "ninety-nine cents"),
    ("$0.01", "one cent"),
    ("$1,000,000", "one million dollars"),
    ("$3.5 million", "three point five million dollars"),
    ("$5k", "five thousand dollars"),
    ("$2bn", "two billion dollars"),
    ("€20", "twenty euros"),
    ("20€", "twenty euros"),
    ("£5.99", "five pounds ninety-nine"),
    ("£0.50", "fifty pence"),
    ("¥100", "one hundred yen"),
    # percentages
    ("45%", "forty-five percent"),
    ("Up 3.5 %", "Up three point five percent"),
    ("-2%", "minus two percent"),
    # units
    ("1 km", "one kilometer"),
    ("42 km", "forty-two kilometers"),
    ("2.5kg", "two point five kilograms"),
    ("3 GHz", "three gigahertz"),
    ("16 GB of RAM", "sixteen gigabytes of RAM"),
    ("25°C", "twenty-five degrees Celsius"),
    ("-5 °C", "minus five degrees Celsius"),
    ("1°F", "one degree Fahrenheit"),
    ("a 90° turn", "a ninety degrees turn"),
    ("100 ms", "one hundred milliseconds"),
    ("60 mph", "sixty miles per hour"),
    ("120 km/h", "one hundred and twenty kilometers per hour"),
    ("5 kWh", "five kilowatt hours"),
    # times
    ("3:30 pm", "three thirty p m"),
    ("at 9:05 a.m. Then", "at nine oh five a m. Then"),
    ("10:00", "ten o'clock"),
    ("14:00", "fourteen hundred"),
    ("15:45", "fifteen forty-five"),
    ("at 5 p.m.", "at five p m."),
    ("at 7am", "at seven a m"),
    # years, decades, dates
    ("in 1999", "in nineteen ninety-nine"),
    ("in 2024,", "in twenty twenty-four,"),
    ("since 1905", "since nineteen oh-five"),
    ("in 2005", "in two thousand and five"),
    ("the 1990s", "the nineteen nineties"),
    ("the 80s", "the eighties"),
    ("the '60s", "the sixties"),
    ("2020–2024", "twenty twenty to twenty twenty-four"),
    ("2024-05-01", "May first twenty twenty-four"),
    ("on March 3", "on March third"),
    ("July 4th", "July fourth"),
    # ordinals and plain numbers
    ("the 21st century", "the twenty-first century"),
    ("2nd place, 3rd try, 100th time", "second place, third try, one hundredth time"),
    ("1,234,567", "one million two hundred and thirty-four thousand five hundred and sixty-seven"),
    ("3.14", "three point one four"),
    ("-7", "minus seven"),
    ("pages 10-20", "pages ten to twenty"),
    ("No. 5", "number five"),
    ("#1 hit", "number one hit"),
    ("version 2.0", "version two point zero"),
    # abbreviations
    ("Dr. Smith vs. Mr. Jones", "Doctor Smith versus Mister Jones"),
    ("Mrs. Lee and Prof. Chen", "Missus Lee and Professor Chen"),
    ("fruit, e.g. apples", "fruit, for example apples"),
    ("one thing, i.e. this", "one thing, that is this"),
    ("apples, pears etc. And more", "apples, pears et cetera. And more"),
    ("apples, pears etc.", "apples, pears et cetera."),
    ("St. Louis", "Saint Louis"),
    ("on Main St.", "on Main Street."),
    ("approx. 5", "approximately five"),
    ("Acme Inc. is", "Acme Incorporated is"),
    # URLs and e-mail addresses
    ("Visit https://www.podforge.dev/docs/intro.", "Visit w w w dot podforge dot dev slash docs slash intro."),
    ("see http://example.com/", "see example dot com"),
    ("go to podforge.dev/docs now", "go to podforge dot dev slash docs now"),
    ("github.com/org/repo-2", "github dot com slash org slash repo dash two"),
    ("Mail jane.doe@example.com.", "Mail jane dot doe at example dot com."),
    ("write to hello_world+pod@mail.example.org", "write to hello underscore world plus pod at mail dot example dot org"),
    # symbols and text that must stay as it is
    ("rock & roll", "rock and roll"),
    ("I am here", "I am here"),
    ("Just words, nothing else.", "Just words, nothing else."),
    ("A 4K screen", "A 4K screen"),
]


@pytest.mark.parametrize(("written", "spoken"), ENGLISH_CASES)
def test_english_is_written_out_as_spoken(written: str, spoken: str) -> None:
    assert normalize_text(written) == spoken


def test_a_whole_sentence_reads_naturally() -> None:
    text = "On 2024-05-01 at 3:30 pm, Dr. Lee paid $1.50 for 2 GB (45% off) at podforge.dev."
    assert normalize_text(text, "en-US") == (
        "On May first twenty twenty-four at three thirty p m, Doctor Lee paid one dollar fifty for "
        "two gigabytes (forty-five percent off) at podforge dot dev."
    )


@pytest.mark.parametrize(
    ("language", "written", "spoken"),
    [
        ("de", "Es kostet 5 Euro", "Es kostet fünf Euro"),
        ("de", "3,5 oder 1.000", "drei Komma fünf oder eintausend"),
        ("fr", "il y a 21 chats", "il y a vingt et un chats"),
        ("es", "-2 grados", "menos dos grados"),
        ("xx", "5 km", "5 km"),
    ],
)
def test_other_languages_get_their_numbers_read(language: str, written: str, spoken: str) -> None:
    assert normalize_text(written, language) == spoken


@pytest.mark.parametrize(
    ("text", "max_chars", "sentences"),
    [
        ("Hello there. How are you? Fine!", 250, ["Hello there.", "How are you?", "Fine!"]),
        ("Dr. Smith met J. R. Jones at 3 p.m. today. Then he left.", 250, ["Dr. Smith met J. R. Jones at 3 p.m. today.", "Then he left."]),
        ("We had apples etc. Then we left.", 250, ["We had apples etc.", "Then we left."]),
        ('He said "Stop." She stopped.', 250, ['He said "Stop."', "She stopped."]),
        ("one, two, three, four five six seven eight", 12, ["one, two,", "three,", "four five", "six seven", "eight"]),
        ("...   —  ", 250, []),
        ("no punctuation at all", 250, ["no punctuation at all"]),
    ],
)
def test_sentences_are_split_for_synthesis(text: str, max_chars: int, sentences: list[str]) -> None:
    assert split_sentences(text, max_chars) == sentences


def test_no_piece_exceeds_the_limit() -> None:
    text = "word " * 300
    pieces = split_sentences(text, 50)
    assert all(len(piece) <= 50 for piece in pieces)
    assert " ".join(pieces).split() == text.split()
