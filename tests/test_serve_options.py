"""``podforge serve``'s decisions that need no server: pool concurrency, where the files are served, deploy defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from podforge.serve import default_concurrency, deployments, file_server_address


@pytest.mark.parametrize(("cpus", "runs"), [(1, 1), (2, 1), (4, 1), (8, 2), (16, 4), (64, 16)])
def test_the_pool_runs_one_flow_run_per_four_cpus_and_at_least_one(cpus: int, runs: int):
    assert default_concurrency(cpus) == runs


@pytest.mark.parametrize(
    ("base_url", "address"),
    [
        ("http://127.0.0.1:8000/", ("127.0.0.1", 8000, "/")),
        ("http://localhost:9000/podcast/", ("localhost", 9000, "/podcast/")),
        ("http://127.0.0.1/", ("127.0.0.1", 80, "/")),
        ("https://127.0.0.1:8443/", None),  # TLS is a real web server's job
        ("https://cdn.example.org/show/", None),
    ],
)
def test_the_output_folder_is_served_only_where_base_url_points_at_this_machine(base_url: str, address):
    assert file_server_address(base_url) == address


def test_deployments_get_the_chosen_output_folder_and_config_as_defaults(tmp_path: Path):
    config = tmp_path / "studio.yaml"
    (episode, episode_options), (nightly, nightly_options), (training, training_options) = deployments(tmp_path / "out", [config], "Europe/Berlin")
    assert (episode, nightly, training) == ("episode", "nightly", "train-music")
    params = json.loads(episode_options[episode_options.index("--params") + 1])
    assert params == {"out_dir": str((tmp_path / "out").resolve()), "config": [str(config.resolve())]}
    assert nightly_options[:2] == ["--timezone", "Europe/Berlin"] and "--params" in nightly_options
    assert json.loads(training_options[1]) == {"config": [str(config.resolve())]}  # training writes no episode: no out_dir


def test_without_choices_the_deployments_keep_the_flows_own_defaults():
    assert deployments(None, None, "UTC") == [("episode", []), ("nightly", ["--timezone", "UTC"]), ("train-music", [])]
