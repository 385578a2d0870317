"""GPU prices from configs/pricing.yaml and the reference notes' cost arithmetic."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from podforge import cost
from podforge.errors import ConfigError
from podforge.steps import GpuUsage, StepRecord


def test_cloud_prices_are_the_reference_prices_per_gpu():
    gpus = cost.load_pricing().gpus
    assert gpus["t4"].usd_per_hour == pytest.approx(0.526)
    assert gpus["a10g"].usd_per_hour == pytest.approx(1.006)
    assert gpus["v100"].usd_per_hour == pytest.approx(3.06)
    assert gpus["a100"].instance_usd_per_hour == pytest.approx(32.77)
    assert gpus["a100"].usd_per_hour == pytest.approx(32.77 / 8)
    assert all(price.source for price in gpus.values())


def test_gpu_seconds_are_priced_by_the_hour_and_local_gpus_by_power():
    assert cost.price_gpu_seconds(3600, "t4") == pytest.approx(0.526)
    assert cost.price_gpu_seconds(90, "a10g") == pytest.approx(1.006 / 40)
    assert cost.price_gpu_seconds(0, "v100") == 0
    local = cost.load_pricing().gpus["rtx3080"]
    assert cost.price_gpu_seconds(3600, "rtx3080") == pytest.approx(local.power_watts / 1000 * local.electricity_usd_per_kwh)
    assert cost.price_gpu_seconds(1800, "2.5") == pytest.approx(1.25)  # a plain price per hour


def test_unknown_gpu_names_the_priced_ones():
    with pytest.raises(ConfigError, match="unknown GPU 'h900'.*t4, a10g, v100, a100"):
        cost.price_gpu_seconds(10, "h900")


def test_100_tracks_of_3_minutes_reproduce_the_notes():
    # Notes: 100 tracks x ~5 GPU-minutes = 500 minutes ~ 8.5 hours; ~$9 at $1/h, ~$25 at $3/h.
    at_1 = cost.estimate(100, 3, "mid-tier", "music")
    assert at_1.gpu_minutes_per_minute.low * 3 == pytest.approx(5.0, abs=0.001)
    assert 8.3 <= at_1.gpu_hours.low == at_1.gpu_hours.high <= 8.5
    assert 8.0 <= at_1.cost_usd.high <= 9.0
    at_3 = cost.estimate(100, 3, "high-end", "music")
    assert at_3.cost_usd.low == pytest.approx(25.0, abs=0.1)
    on_t4 = cost.estimate(100, 3, "t4")
    assert on_t4.cost_usd.low == pytest.approx(on_t4.gpu_hours.low * 0.526)


def test_20_videos_reproduce_the_notes():
    # Notes: efficient pipeline 0.25-0.5 GPU-hours per 3-minute video: 20 videos = 5-10 GPU hours,
    # $5-$10 at $1/h, $15-$30 at $3/h; heavy diffusion 20-60 GPU hours.
    efficient = cost.estimate(20, 3, "mid-tier", "video")
    assert (efficient.gpu_hours.low, efficient.gpu_hours.high) == pytest.approx((5.0, 10.0))
    assert (efficient.cost_usd.low, efficient.cost_usd.high) == pytest.approx((5.0, 10.0))
    at_3 = cost.estimate(20, 3, "high-end", "video")
    assert (at_3.cost_usd.low, at_3.cost_usd.high) == pytest.approx((15.0, 30.0))
    heavy = cost.estimate(20, 3, "high-end", "video", engine="diffusion-video")
    assert (heavy.gpu_hours.low, heavy.gpu_hours.high) == pytest.approx((20.0, 60.0))


def test_a_measured_rate_replaces_the_configured_one():
    records = [
        StepRecord(step="music", engine="musicgen", device="cuda", key="a", gpu=GpuUsage(gpu_seconds=54.0)),
        StepRecord(step="music", engine="musicgen", device="cuda", key="b", gpu=GpuUsage(gpu_seconds=36.0)),
    ]
    rate = cost.rate_from_gpu_seconds((record.gpu.gpu_seconds for record in records), output_minutes=0.5)  # 90 GPU-s for 30 s of music
    assert rate == pytest.approx(3.0)
    measured = cost.estimate(100, 3, "mid-tier", "music", per_minute_gpu_minutes=rate)
    assert measured.gpu_hours.low == pytest.approx(15.0)
    assert measured.source.startswith("given")


def test_a_bad_pricing_file_names_the_file_and_field(tmp_path):
    bad = tmp_path / "pricing.yaml"
    bad.write_text("gpus:\n  t4: {name: T4}\nengines: {}\ndefaults: {}\n")
    with pytest.raises(ConfigError) as caught:
        cost.load_pricing(bad)
    assert caught.value.file == str(bad) and caught.value.field == "gpus.t4"
    assert "instance_usd_per_hour" in caught.value.message


def test_estimate_command_prints_the_arithmetic():
    import typer

    from podforge.envs_cli import estimate_command

    app = typer.Typer()
    app.command()(estimate_command)
    result = CliRunner().invoke(app, ["--tracks", "100", "--minutes", "3", "--gpu", "t4"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "8.33" in result.output  # GPU hours for the tracks
    assert "$4.38" in result.output  # 8.33 h on a T4
    assert "$8.33" in result.output and "$25.00" in result.output  # the notes' $1/h and $3/h
    both = CliRunner().invoke(app, ["--tracks", "100", "--videos", "20", "--gpu", "mid-tier"], env={"COLUMNS": "200"})
    assert both.exit_code == 0, both.output
    assert "5.00 - 10.00" in both.output  # GPU hours for the videos
    assert "13.33 - 18.33" in both.output and "$13.33 - $18.33" in both.output  # both, at $1/h
    refused = CliRunner().invoke(app, ["--tracks", "1", "--gpu", "h900"])
    assert refused.exit_code == 1 and "unknown GPU 'h900'" in refused.output
