"""Mix, master and delivery on a synthetic episode, measured from the outside.

The "speech" is two hosts of amplitude-modulated tones (host 2 nine decibels quieter), the bed a steady low
chord, so the files can be taken apart by frequency: the bed's level under speech, its swing, the hosts'
balance and the intro's level are read from the written files with FFT band energies and ffmpeg's
ebur128 meter, not from the mixer's own numbers. The mixer's quality checks must agree and pass.
"""

from __future__ import annotations

import math
import subprocess

import numpy as np
import pytest
import soundfile

from podforge.config import MixSettings
from podforge.media.audio import write_wav
from podforge.media.ffmpeg import ffmpeg_exe, measure_loudness, probe
from podforge.media.loudness import columnwise_max, integrated_loudness, k_weighting_power, true_peak_db, true_peaks
from podforge.media.mixing import limiter_gain, limit_per_sample, mix_and_master
from podforge.media.mux import deliver, deliver_audio, encode_wav, hold_to_target, encode_mp3
from podforge.timing import TimedLine

RATE = 48000
HOST_TONES = {0: (500.0, 1000.0), 1: (800.0, 1600.0)}
BED_TONES = (110.0, 165.0)
LINE_S, GAP_S, CHAPTER_GAP_S = 2.6, 0.35, 0.9


def synthetic_dialogue(lines: int = 8) -> tuple[np.ndarray, list[TimedLine]]:
    """Lines alternating between two hosts, syllable-like bursts (4 Hz), peaks at full scale; host 2 is -9 dB."""
    pieces, timed, cursor = [], [], 0
    t = np.arange(int(LINE_S * RATE)) / RATE
    syllables = np.clip(np.sin(2 * np.pi * 4.0 * t) * 1.3, 0.0, 1.0) ** 1.5
    for index in range(lines):
        host = index % 2
        if index:
            gap = CHAPTER_GAP_S if index == lines // 2 else GAP_S
            pieces.append(np.zeros(int(gap * RATE), dtype=np.float32))
            cursor += pieces[-1].size
        low, high = HOST_TONES[host]
        line = syllables * (np.sin(2 * np.pi * low * t) + 0.5 * np.sin(2 * np.pi * high * t + 0.7))
        line *= (1.0 if host == 0 else 10 ** (-9 / 20)) / np.abs(line).max()
        timed.append(TimedLine(index=index, host=host, text=f"line {index}", chapter=int(index >= lines // 2), start_s=cursor / RATE, end_s=(cursor + line.size) / RATE))
        pieces.append(line.astype(np.float32))
        cursor += line.size
    return np.concatenate(pieces), timed


def bed_loop(amplitude: float, seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    left = np.sin(2 * np.pi * BED_TONES[0] * t) + 0.6 * np.sin(2 * np.pi * BED_TONES[1] * t)
    right = np.sin(2 * np.pi * BED_TONES[0] * t + 0.4) + 0.6 * np.sin(2 * np.pi * BED_TONES[1] * t + 1.1)
    stereo = np.stack([left, right], axis=1)
    return (amplitude * stereo / np.abs(stereo).max()).astype(np.float32)


def band_db(frames: np.ndarray, tones: tuple[float, ...], width_hz: float = 20.0) -> float:
    """Energy (dB) within ``width_hz`` of each tone, both channels, of a window of frames."""
    mono = frames.mean(axis=1) if frames.ndim == 2 else frames
    spectrum = np.abs(np.fft.rfft(mono * np.hanning(mono.size))) ** 2
    freqs = np.fft.rfftfreq(mono.size, 1 / RATE)
    band = np.zeros_like(freqs, dtype=bool)
    for tone in tones:
        band |= np.abs(freqs - tone) <= width_hz
    return 10 * math.log10(spectrum[band].sum() + 1e-20)


def windows_inside(lines: list[TimedLine], offset_s: float, window_s: float = 0.4, hop_s: float = 0.1):
    """(host, start sample, end sample) of every 400 ms window that lies inside a line of the master."""
    for line in lines:
        start = line.start_s + offset_s
        while start + window_s <= line.end_s + offset_s:
            yield line.host, int(start * RATE), int((start + window_s) * RATE)
            start += hop_s


def excerpt_loudness(master: np.ndarray, start_s: float, end_s: float, path) -> float:
    """ebur128's integrated loudness of a part of the master (the reference meter on an excerpt)."""
    write_wav(path, master[int(start_s * RATE) : int(end_s * RATE)], RATE)
    return measure_loudness(path).integrated_lufs


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """A loud bed (close to full scale, the case a sidechain ducked least) under two unequal hosts."""
    work = tmp_path_factory.mktemp("mix")
    speech, lines = synthetic_dialogue()
    dialogue = write_wav(work / "dialogue.wav", speech, RATE)
    bed = write_wav(work / "bed.wav", bed_loop(0.95), RATE)
    settings = MixSettings()
    master = mix_and_master(dialogue, lines, bed, settings.levels(), settings.timing(), work)
    frames, rate = soundfile.read(str(master.wav), dtype="float32", always_2d=True)
    assert rate == RATE
    return master, frames, lines, settings, work


def test_the_master_is_on_target_and_says_so(mixed):
    master, frames, lines, settings, _ = mixed
    assert abs(master.duration_s - (settings.intro_s + lines[-1].end_s + settings.outro_s)) < 1e-3
    assert abs(probe(master.wav).duration_s - master.duration_s) < 0.05
    measured = measure_loudness(master.wav)
    assert abs(measured.integrated_lufs - settings.target_lufs) <= 0.2
    assert measured.true_peak_dbtp <= settings.true_peak_db - 0.5, "the master keeps headroom for the codecs"
    assert master.loudness == measured
    names = {check.name for check in master.quality}
    assert {"speech over bed", "bed gain swing under speech", "intro level", "outro level", "hosts' loudness spread"} <= names
    assert all(check.passed for check in master.quality), [check for check in master.quality if not check.passed]


def test_the_bed_sits_at_least_12_db_under_speech_without_pumping(mixed):
    _, frames, lines, settings, _ = mixed
    speech_tones = tuple(tone for tones in HOST_TONES.values() for tone in tones)
    separation, bed_levels = [], []
    for _, start, end in windows_inside(lines, settings.intro_s):
        window = frames[start:end]
        bed = band_db(window, BED_TONES)
        separation.append(band_db(window, speech_tones) - bed)
        bed_levels.append(bed)
    separation = np.array(separation)
    assert np.percentile(separation, 10) >= 12.0, f"speech over bed: 10th percentile {np.percentile(separation, 10):.1f} dB"
    assert np.percentile(bed_levels, 90) - np.percentile(bed_levels, 10) <= 3.0, "the bed's level swings under speech"
    between = frames[int((settings.intro_s + lines[0].end_s + 0.1) * RATE) : int((settings.intro_s + lines[1].start_s - 0.05) * RATE)]
    assert band_db(between, BED_TONES) <= np.median(bed_levels) + 1.0, "a short pause between lines keeps the bed down"


def test_intro_and_outro_sit_at_the_configured_level_under_the_speech(mixed, tmp_path):
    _, frames, lines, settings, _ = mixed
    speech_start, speech_end = settings.intro_s, settings.intro_s + lines[-1].end_s
    speech = excerpt_loudness(frames, speech_start, speech_end, tmp_path / "speech.wav")
    intro = excerpt_loudness(frames, 1.6, speech_start - 0.7, tmp_path / "intro.wav")
    outro = excerpt_loudness(frames, speech_end + 0.8, frames.shape[0] / RATE - 2.6, tmp_path / "outro.wav")
    assert abs(intro - speech - settings.bed_level_db) <= 1.0, (intro, speech)
    assert abs(outro - speech - settings.bed_level_db) <= 1.0, (outro, speech)


def test_the_hosts_are_levelled(mixed):
    _, frames, lines, settings, _ = mixed
    levels: dict[int, list[float]] = {0: [], 1: []}
    for host, start, end in windows_inside(lines, settings.intro_s):
        levels[host].append(10 ** (band_db(frames[start:end], HOST_TONES[host]) / 10))
    first, second = (10 * math.log10(np.mean(levels[host])) for host in (0, 1))
    assert abs(first - second) <= 1.0, f"host 2 was 9 dB quieter and is still {first - second:.1f} dB apart"


@pytest.fixture(scope="module")
def picture(mixed):
    """A small H.264 picture as long as the episode (the mux copies it)."""
    master, _, _, _, work = mixed
    video = work / "picture.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", f"color=size=64x64:rate=25:duration={master.duration_s:.2f}", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(video)], check=True)
    return video


def delivered(master, picture, work, *, peak_limit_db: float = -1.0, bitrate: str = "160k"):
    work.mkdir(exist_ok=True)
    audio = deliver_audio(master.wav, master.loudness, work, target_lufs=-16.0, peak_limit_db=peak_limit_db, aac_bitrate=bitrate, mp3_bitrate=bitrate)
    return audio, deliver(picture, audio, work, target_lufs=-16.0, peak_limit_db=peak_limit_db)


def test_every_delivered_file_meets_loudness_and_true_peak(mixed, picture, tmp_path):
    master, _, _, settings, _ = mixed
    audio, delivery = delivered(master, picture, tmp_path)
    assert all(check.passed for check in delivery.quality), [check for check in delivery.quality if not check.passed]
    assert {check.scope for check in delivery.quality} == {"episode.wav", "episode.mp4", "episode.mp3"}
    for path in (delivery.wav, delivery.mp4, delivery.mp3):
        measured = measure_loudness(path)  # the MP4's AAC track and the MP3 are decoded and measured
        assert abs(measured.integrated_lufs - settings.target_lufs) <= 0.5, (path.name, measured)
        assert measured.true_peak_dbtp <= -1.0, (path.name, measured)
    assert measure_loudness(delivery.mp4) == audio.aac.loudness == delivery.loudness["episode.mp4"], "the MP4 carries the AAC as it was measured"
    assert sorted((stream.kind, stream.codec) for stream in probe(delivery.mp4).streams) == [("audio", "aac"), ("video", "h264")]
    assert probe(delivery.mp4).streams[0].codec == probe(picture).streams[0].codec and delivery.wav == master.wav


def test_an_encode_that_overshoots_is_limited_again_and_measured_again(mixed, picture, tmp_path):
    """A limit under the master's own true peak: the files overshoot it, the master is limited again."""
    master, _, _, _, _ = mixed
    limit = master.loudness.true_peak_dbtp - 0.5
    _, delivery = delivered(master, picture, tmp_path, peak_limit_db=limit, bitrate="96k")
    assert set(delivery.adjusted) == {"episode.wav", "episode.mp4", "episode.mp3"}, delivery.adjusted
    assert delivery.wav != master.wav and delivery.wav.parent == tmp_path
    for path in (delivery.wav, delivery.mp4, delivery.mp3):
        measured = measure_loudness(path)
        assert measured.true_peak_dbtp <= limit and abs(measured.integrated_lufs + 16.0) <= 0.5, (path.name, measured)
    assert all(check.passed for check in delivery.quality)


def test_an_encode_that_lost_loudness_is_made_again_with_a_gain_when_its_peaks_leave_room(mixed, tmp_path):
    """A master 0.8 LU under the target with its peaks far under the limit: the MP3 is encoded again with
    a gain, not from a master limited again."""
    master, _, _, _, _ = mixed
    quiet = encode_wav(master.wav, tmp_path / "quiet.wav", gain_db=-0.8)
    work = tmp_path / "mp3"
    work.mkdir()
    out = work / "episode.mp3"
    mp3 = hold_to_target(out.name, lambda source, gain: encode_mp3(source, out, bitrate="128k", gain_db=gain), quiet, work, target_lufs=-16.0, peak_limit_db=-1.0)
    assert mp3.adjusted and "a gain of +" in mp3.adjusted, mp3.adjusted
    assert sorted(path.name for path in work.iterdir()) == ["episode.mp3"], "no master was limited again"
    measured = measure_loudness(mp3.path)
    assert abs(measured.integrated_lufs + 16.0) <= 0.2 and measured.true_peak_dbtp <= -1.0, measured
    assert mp3.loudness == measured


def test_the_mp3_makes_up_lames_expected_loss_in_its_first_encode(mixed, tmp_path, monkeypatch):
    """With the loss LAME really has on this master as the expected loss, the MP3 is on target in one encode."""
    import podforge.media.mux as mux

    master, _, _, _, _ = mixed
    plain = measure_loudness(encode_mp3(master.wav, tmp_path / "plain.mp3", bitrate="160k"))
    loss = master.loudness.integrated_lufs - plain.integrated_lufs
    monkeypatch.setattr(mux, "MP3_LOSS_LU", loss)
    encodes = []
    monkeypatch.setattr(mux, "encode_mp3", lambda *args, **kwargs: encodes.append(kwargs["gain_db"]) or encode_mp3(*args, **kwargs))
    work = tmp_path / "work"
    work.mkdir()
    limit = max(-1.0, max(plain.true_peak_dbtp, master.loudness.true_peak_dbtp) + abs(loss) + mux.RELIMIT_MARGIN_DB + 0.1)  # room for the gain
    audio = mux.deliver_audio(master.wav, master.loudness, work, target_lufs=master.loudness.integrated_lufs, peak_limit_db=limit, aac_bitrate="160k", mp3_bitrate="160k")
    assert encodes == [pytest.approx(loss)] and audio.mp3.adjusted is None, (encodes, audio.mp3)
    assert abs(audio.mp3.loudness.integrated_lufs - master.loudness.integrated_lufs) <= 0.2


def test_the_aac_is_encoded_with_the_fast_coder_and_keeps_the_master(mixed, tmp_path, monkeypatch):
    """ffmpeg's AAC encoder defaults to ``twoloop`` (three times the CPU); the delivered AAC asks for ``fast``
    and still decodes to the master within 25 dB signal-to-noise."""
    import av

    import podforge.media.mux as mux

    master, _, _, _, _ = mixed
    commands = []
    real_run_graph = mux.run_graph
    monkeypatch.setattr(mux, "run_graph", lambda stream, **kwargs: commands.append(stream.get_args()) or real_run_graph(stream, **kwargs))
    aac = mux.encode_aac(master.wav, tmp_path / "episode.m4a", bitrate="160k")
    assert len(commands) == 1 and commands[0][commands[0].index("-aac_coder") + 1] == "fast", commands
    reference, rate = soundfile.read(master.wav, dtype="float32", always_2d=True)
    with av.open(str(aac)) as container:
        assert container.streams.audio[0].codec_context.name == "aac" and container.streams.audio[0].rate == rate
        decoded = np.concatenate([frame.to_ndarray() for frame in container.decode(audio=0)], axis=1).T
    length = min(len(decoded), len(reference))
    noise = decoded[:length] - reference[:length]  # ffmpeg trims the encoder's priming: the samples line up
    assert 10 * math.log10(float(np.sum(reference[:length] ** 2)) / float(np.sum(noise**2))) >= 25.0


# --- the numpy meter against ebur128 ------------------------------------------------------------------


@pytest.mark.parametrize("rate", [44100, 48000])
def test_numpy_loudness_and_true_peak_agree_with_ebur128(tmp_path, rate):
    rng = np.random.default_rng(3)
    t = np.arange(int(6.0 * rate)) / rate
    signals = {
        "noise": 0.2 * rng.standard_normal((t.size, 2)),
        "bursts": np.stack([np.sin(2 * np.pi * 440 * t) * (np.sin(2 * np.pi * 1.5 * t) > 0), 0.3 * np.sin(2 * np.pi * 3000 * t)], axis=1) * 0.7,
    }
    for name, signal in signals.items():
        path = write_wav(tmp_path / f"{name}.wav", signal.astype(np.float32), rate)
        written, _ = soundfile.read(str(path), dtype="float32", always_2d=True)
        reference = measure_loudness(path)
        assert abs(integrated_loudness(written, rate) - reference.integrated_lufs) <= 0.1, name
        assert -0.1 <= true_peak_db(written) - reference.true_peak_dbtp <= 0.3, name


def test_true_peak_finds_the_crest_between_samples():
    """A tone at a quarter of the sample rate sampled 45° off its crests: samples at 0.64, crest at 0.9.

    (ebur128's interpolation filter reads about 0.5 dB high this close to Nyquist; the delivered files'
    codec headroom and the re-limit cover that.)"""
    t = np.arange(RATE) / RATE
    tone = 0.9 * np.sin(2 * np.pi * RATE / 4 * t + np.pi / 4)
    assert 20 * math.log10(np.abs(tone).max()) < -3.8
    assert abs(true_peak_db(tone) - 20 * math.log10(0.9)) <= 0.15


def test_k_weighting_matches_the_coefficients_published_for_48_khz():
    """BS.1770-4, table 1 and 2: the shelf and the RLB high-pass as biquads at 48 kHz."""
    freqs = np.array([20.0, 50.0, 100.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0, 20000.0])
    z = np.exp(-1j * 2 * np.pi * freqs / 48000)
    shelf = (1.53512485958697 - 2.69169618940638 * z + 1.19839281085285 * z**2) / (1 - 1.69065929318241 * z + 0.73248077421585 * z**2)
    highpass = (1 - 2 * z + z**2) / (1 - 1.99004745483398 * z + 0.99007225036621 * z**2)
    published = 10 * np.log10(np.abs(shelf * highpass) ** 2)
    assert np.allclose(10 * np.log10(k_weighting_power(freqs, 48000)), published, atol=0.01)


def test_the_limiter_holds_inter_sample_peaks_under_the_ceiling(tmp_path):
    """A tone at a quarter of the sample rate, sampled 45° off its crests: samples at 0.707, true peak 1.0."""
    t = np.arange(RATE) / RATE
    burst = np.where((t > 0.3) & (t < 0.6), 1.0, 0.25) * np.sin(2 * np.pi * RATE / 4 * t + np.pi / 4)
    frames = np.stack([burst, burst], axis=1).astype(np.float32)
    assert np.abs(frames).max() < 0.75 and true_peak_db(frames) > -0.2
    ceiling_db = -3.0
    gain = limit_per_sample(limiter_gain(true_peaks(frames, block=48), 10 ** (ceiling_db / 20)), frames.shape[0], RATE)
    limited = frames * gain[:, None]
    path = write_wav(tmp_path / "limited.wav", limited, RATE)
    assert measure_loudness(path).true_peak_dbtp <= ceiling_db + 0.1
    assert true_peak_db(limited) <= ceiling_db + 0.01
    assert gain[: int(0.2 * RATE)].min() == pytest.approx(1.0), "quiet audio well before the burst is left alone"
    assert np.abs(np.diff(gain)).max() < 0.01, "the gain moves smoothly"


def test_the_peak_envelope_is_each_frames_largest_magnitude_over_its_channels():
    """The true-peak meter takes each frame's loudest channel column by column (numpy's ``max(axis=1)``
    over two channels is ten times slower): the same values, for mono, stereo and 4× oversampled rows."""
    rng = np.random.default_rng(7)
    for columns in (1, 2, 4):
        values = np.abs(rng.standard_normal((10_001, columns)).astype(np.float32))
        assert np.array_equal(columnwise_max(values), values.max(axis=1))
    stereo = rng.standard_normal((48_000, 2)).astype(np.float32) * 0.3
    stereo[12_345, 1] = 0.99  # one loud sample in the right channel only
    assert true_peaks(stereo, block=48_000)[0] >= 0.99
