"""Text normalisation: what a person would say, case by case, and sentence splitting for TTS chunks."""

from __future__ import annotations

import pytest

from podforge.textnorm import ACRONYMS_AS_WORDS, Rewrite, normalize_segments, normalize_text, rewrites, split_sentences, spoken_word_count, time_written_words

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
    ("16 GB of RAM", "sixteen gigabytes of ram"),
    ("25°C", "twenty-five degrees Celsius"),
    ("-5 °C", "minus five degrees Celsius"),
    ("1°F", "one degree Fahrenheit"),
    ("a 90° turn", "a ninety degrees turn"),
    ("100 ms", "one hundred milliseconds"),
    ("60 mph", "sixty miles per hour"),
    ("120 km/h", "one hundred and twenty kilometers per hour"),
    ("5 kWh", "five kilowatt hours"),
    ("2,400 rpm", "two thousand four hundred R P M"),
    ("60 fps", "sixty frames per second"),
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
    # ranges
    ("$15–$30", "fifteen to thirty dollars"),
    ("$15-30", "fifteen to thirty dollars"),
    ("€15–€30", "fifteen to thirty euros"),
    ("15–30€", "fifteen to thirty euros"),
    ("$1.50–$2", "one dollar fifty to two dollars"),
    ("$1–2 million", "one to two million dollars"),
    ("10–20%", "ten to twenty percent"),
    ("5-10 ms", "five to ten milliseconds"),
    ("3-4x", "three to four times"),
    # rates
    ("$4/hr", "four dollars an hour"),
    ("$4/h", "four dollars an hour"),
    ("$20/mo", "twenty dollars a month"),
    ("$99/month", "ninety-nine dollars a month"),
    ("$120/yr", "one hundred and twenty dollars a year"),
    ("$15–$30/hr", "fifteen to thirty dollars an hour"),
    ("$0.50/GB", "fifty cents per gigabyte"),
    ("$3/1M tokens", "three dollars per million tokens"),
    ("$20/user/month", "twenty dollars per user per month"),
    ("500 tokens/s", "five hundred tokens per second"),
    ("20 GB/month", "twenty gigabytes per month"),
    # multipliers, dimensions and scaled numbers
    ("1.67x", "one point six seven times"),
    ("10x faster", "ten times faster"),
    ("2×", "two times"),
    ("a 2x2 grid", "a two by two grid"),
    ("1920x1080", "nineteen twenty by ten eighty"),
    ("2.5GB", "two point five gigabytes"),
    ("3.5 ms", "three point five milliseconds"),
    ("1.5k", "one point five thousand"),
    ("10k users", "ten thousand users"),
    ("7B parameters", "seven billion parameters"),
    ("2M", "two million"),
    # code
    ("torch.cuda.is_available()", "torch dot cuda dot is available"),
    ("Call is_available() now.", "Call is available now."),
    ("os.path.join", "os dot path dot join"),
    ("model.isTraining", "model dot is training"),
    ("edit config.yaml", "edit config dot yaml"),
    ("U.S. policy", "U.S. policy"),
    # versions
    ("v2.1.0", "version two point one point zero"),
    ("v2", "version two"),
    ("Python 3.11", "Python three point eleven"),
    ("Ubuntu 22.04", "Ubuntu twenty-two point oh four"),
    ("release 1.2.3", "release one point two point three"),
    # acronyms: spelled, read as words, with numbers
    ("GPU", "G P U"),
    ("two GPUs", "two G P U's"),
    ("the CPU's cache", "the C P U's cache"),
    ("CUDA", "Cuda"),
    ("NVENC", "N V enc"),
    ("JSON", "Jason"),
    ("A100", "A one hundred"),
    ("T4", "T four"),
    ("A10G", "A ten G"),
    ("GPT-4", "G P T four"),
    ("RTX 4090", "R T X forty ninety"),
    ("MP3", "M P three"),
    ("H.264 video", "H two sixty-four video"),
    ("World War II", "World War II"),
    ("NOT this", "NOT this"),
    ("THIS IS HUGE", "THIS IS HUGE"),
    # fractions and negatives
    ("1/2", "one half"),
    ("3/4", "three quarters"),
    ("2/3 of", "two thirds of"),
    ("1 1/2 cups", "one and a half cups"),
    ("½", "one half"),
    ("2¼", "two and a quarter"),
    ("9/10 dentists", "nine out of ten dentists"),
    ("24/7", "twenty-four seven"),
    ("50/50", "fifty fifty"),
    ("−40°C", "minus forty degrees Celsius"),
    ("-1.5", "minus one point five"),
    # symbols and text that must stay as it is
    ("rock & roll", "rock and roll"),
    ("I am here", "I am here"),
    ("Just words, nothing else.", "Just words, nothing else."),
    ("A 4K screen", "A four K screen"),
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


def test_segments_pair_each_written_stretch_with_what_is_said() -> None:
    text = "At 3:30 pm the A100 costs $4/hr — plain words stay."
    segments = normalize_segments(text)
    assert " ".join(segment.written for segment in segments) == text
    assert " ".join(segment.spoken for segment in segments if segment.spoken) == normalize_text(text)
    assert Rewrite("3:30 pm", "three thirty p m") in segments, "a rewrite over two words keeps them together"
    assert rewrites(text) == [Rewrite("3:30 pm", "three thirty p m"), Rewrite("A100", "A one hundred"), Rewrite("$4/hr", "four dollars an hour")]
    assert rewrites("Nothing to change here.") == []
    assert rewrites("on Python 3.11 since March 3") == [Rewrite("3.11", "three point eleven"), Rewrite("3", "third")], "words a rewrite keeps stay apart"


@pytest.mark.parametrize("written", [case[0] for case in ENGLISH_CASES])
def test_every_written_word_is_in_exactly_one_segment(written: str) -> None:
    segments = normalize_segments(written)
    assert [word for segment in segments for word in segment.written.split()] == written.split()
    assert " ".join(s.spoken for s in segments if s.spoken) == normalize_text(written)


def test_written_words_are_timed_from_their_spoken_words() -> None:
    text = "It costs $4/hr — fine."
    spoken = normalize_text(text)  # It costs four dollars an hour — fine.
    assert spoken_word_count(spoken) == 7
    times = [(float(i), i + 0.8) for i in range(7)]
    timed = time_written_words(text, times)
    assert timed == [("It", 0.0, 0.8), ("costs", 1.0, 1.8), ("$4/hr", 2.0, 5.8), ("—", 5.8, 5.8), ("fine.", 6.0, 6.8)]


def test_written_words_share_a_rewrite_of_several_words_and_survive_a_count_mismatch() -> None:
    timed = time_written_words("at 3:30 pm", [(0.0, 0.5), (0.5, 1.0), (1.0, 1.5), (1.5, 2.0), (2.0, 2.5)])
    assert [word for word, _, _ in timed] == ["at", "3:30", "pm"]
    assert timed[0][1:] == (0.0, 0.5) and timed[1][1] == 0.5 and timed[2][2] == 2.5 and timed[1][2] == timed[2][1]
    spread = time_written_words("one two three", [(0.0, 1.0), (2.0, 3.0)])  # the engine found two words, not three
    assert [word for word, _, _ in spread] == ["one", "two", "three"] and spread[0][1] == 0.0 and spread[-1][2] == 3.0
    assert all(start <= end for _, start, end in spread)


def test_acronyms_read_as_words_are_listed_with_their_reading() -> None:
    for acronym, spoken in ACRONYMS_AS_WORDS.items():
        assert normalize_text(f"the {acronym} here") == f"the {spoken} here"
