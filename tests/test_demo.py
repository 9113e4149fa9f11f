"""``secagg demo``: the non-IID split and short end-to-end runs of the command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from secagg.cli import main
from secagg.demo import load_federated


def label_skew(num_clients: int, alpha: float) -> float:
    """Mean, over clients, of the share of their most frequent label."""
    data = load_federated(num_clients, alpha=alpha, seed=3)
    return float(np.mean([np.bincount(y).max() / len(y) for y in data.client_y]))


def test_split_partitions_the_training_set_non_iid() -> None:
    data = load_federated(30, alpha=0.5, seed=1)
    assert data.num_clients == 30 and data.num_features == 64 and data.num_classes == 10
    assert min(len(y) for y in data.client_y) >= 2
    # every training example goes to exactly one client: the clients' rows are the
    # training half of the same stratified split, as a multiset
    x, y = load_digits(return_X_y=True)
    x_train, _, y_train, _ = train_test_split(
        x / 16.0, y, test_size=0.25, random_state=1, stratify=y
    )
    ours = sorted(
        r.astype(np.float32).tobytes() + bytes([int(label)])
        for xs, ys in zip(data.client_x, data.client_y)
        for r, label in zip(xs, ys)
    )
    theirs = sorted(
        r.astype(np.float32).tobytes() + bytes([int(label)]) for r, label in zip(x_train, y_train)
    )
    assert ours == theirs
    again = load_federated(30, alpha=0.5, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(data.client_y, again.client_y))
    # Dirichlet(0.5) label skew is far stronger than a near-IID split
    assert label_skew(30, 0.5) > label_skew(30, 1000.0) + 0.2


def test_split_refuses_impossible_sizes() -> None:
    from secagg.errors import InvalidParameterError

    with pytest.raises(InvalidParameterError):
        load_federated(1000, min_examples=2)
    with pytest.raises(InvalidParameterError):
        load_federated(10, alpha=0.0)


def test_demo_default_pipeline_writes_json_and_plot(tmp_path: Path) -> None:
    out, png = tmp_path / "demo.json", tmp_path / "demo.png"
    status = main(
        [
            "demo",
            "--clients",
            "12",
            "--clients-per-round",
            "8",
            "--rounds",
            "2",
            "--verify",
            "--quiet",
            "--json",
            str(out),
            "--plot",
            str(png),
        ]
    )
    assert status == 0
    result = json.loads(out.read_text())
    for key in (
        "accuracy",
        "epsilon_per_client",
        "epsilon_amplified",
        "amplification_assumption",
        "delta",
        "rounds",
        "clients",
        "protocol",
        "dp",
        "seconds",
        "plain_accuracy",
    ):
        assert key in result
    assert (result["protocol"], result["dp"], result["rounds"], result["clients"]) == (
        "secagg+",
        "distributed",
        2,
        12,
    )
    assert 0.0 <= result["accuracy"] <= 1.0 and 0.0 <= result["plain_accuracy"] <= 1.0
    assert result["epsilon_per_client"] > 0 and result["delta"] == pytest.approx(1 / 120)
    assert result["epsilon_level"] == "user"
    # the amplified figure needs an adversary who neither chooses nor learns the cohorts
    assert "neither chooses nor learns" in result["amplification_assumption"]
    assert "server" in result["per_client_assumption"]
    assert (
        result["epsilon_amplified"] is None
        or result["epsilon_amplified"] <= result["epsilon_per_client"]
    )
    assert [r["round"] for r in result["curve"]] == [1, 2]
    assert result["curve"][0]["epsilon_per_client"] <= result["curve"][1]["epsilon_per_client"]
    assert result["curve"][-1]["epsilon_per_client"] == pytest.approx(result["epsilon_per_client"])
    assert result["max_abs_difference"] is not None and result["max_abs_difference"] < 1e-9
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_without_dp_reports_no_epsilon(tmp_path: Path) -> None:
    out = tmp_path / "demo.json"
    status = main(
        [
            "demo",
            "--clients",
            "10",
            "--clients-per-round",
            "10",
            "--rounds",
            "1",
            "--protocol",
            "secagg",
            "--dp",
            "none",
            "--dropout",
            "0.2",
            "--no-baseline",
            "--quiet",
            "--json",
            str(out),
        ]
    )
    assert status == 0
    result = json.loads(out.read_text())
    assert result["epsilon_per_client"] is None and result["epsilon_amplified"] is None
    assert result["plain_accuracy"] is None
    assert result["curve"][0]["clients"] == 10 and result["curve"][0]["survivors"] == 8


def test_demo_rejects_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--clients", "2", "--quiet"]) == 1
    assert "--clients" in capsys.readouterr().err
    assert main(["demo", "--dp", "none", "--target-epsilon", "3", "--quiet"]) == 1


def test_demo_prints_the_per_client_and_the_amplified_epsilon(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = main(
        ["demo", "--clients", "12", "--clients-per-round", "8", "--rounds", "2", "--no-baseline"]
    )
    assert status == 0
    out = capsys.readouterr().out
    assert "epsilon per client:" in out and "holds against the server" in out
    assert "(user-level, smaller of the RDP and Gaussian-PLD bounds;" in out  # distributed DP
    assert "epsilon amplified by sampling:" in out and "neither chooses nor learns" in out


@pytest.mark.parametrize("option", ["--json", "--plot"])
def test_demo_refuses_an_unwritable_output_path_before_training(
    tmp_path: Path, option: str, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    target = blocker / "out" / "x.json"  # its parent cannot be created: a file is in the way
    status = main(
        ["demo", "--clients", "12", "--rounds", "1", "--no-baseline", option, str(target)]
    )
    assert status == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("secagg demo: error: cannot write " + option)
    assert "round" not in captured.out  # nothing was trained


def test_demo_creates_missing_parent_directories(tmp_path: Path) -> None:
    out = tmp_path / "new" / "dir" / "demo.json"
    status = main(
        [
            "demo",
            "--clients",
            "10",
            "--clients-per-round",
            "10",
            "--rounds",
            "1",
            "--dp",
            "none",
            "--no-baseline",
            "--quiet",
            "--json",
            str(out),
        ]
    )
    assert status == 0 and json.loads(out.read_text())["rounds"] == 1


def test_reproducible_demo_repeats_its_accuracies_and_epsilons(tmp_path: Path) -> None:
    def run(name: str, *extra: str) -> dict[str, object]:
        out = tmp_path / name
        command = [
            "demo",
            "--clients",
            "12",
            "--clients-per-round",
            "8",
            "--rounds",
            "2",
            "--no-baseline",
            "--quiet",
            "--seed",
            "4",
            "--json",
            str(out),
            *extra,
        ]
        assert main(command) == 0
        return dict(json.loads(out.read_text()))

    def figures(result: dict[str, object]) -> list[tuple[object, ...]]:
        curve = result["curve"]
        assert isinstance(curve, list)
        return [
            (r["accuracy"], r["epsilon_per_client"], r["epsilon_amplified"], r["clients"])
            for r in curve
        ]

    first, second = run("a.json", "--reproducible"), run("b.json", "--reproducible")
    assert figures(first) == figures(second)
    assert (
        first["reproducible"] is True
        and first["simulation_seed"] == 4
        and first["private"] is False
    )
    assert "NOT private" in str(first["simulation_warning"])
    default = run("c.json")
    assert (
        default["reproducible"] is False
        and default["private"] is True
        and default["simulation_seed"] is None
    )


def test_reproducible_mode_refuses_local_dp(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--dp", "local", "--reproducible", "--quiet"]) == 1
    assert "--reproducible" in capsys.readouterr().err


def test_paillier_demo_states_its_settings_and_cost(capsys: pytest.CaptureFixture[str]) -> None:
    from secagg.demo import PAILLIER_DEMO_ROUNDS, paillier_round_seconds

    # the estimate grows with the key, the cohort and the committee
    assert paillier_round_seconds(3072, 50, 10, 6) > paillier_round_seconds(2048, 50, 10, 6)
    assert paillier_round_seconds(2048, 50, 10, 6) > paillier_round_seconds(2048, 50, 4, 3)
    assert paillier_round_seconds(2048, 50, 4, 3) > paillier_round_seconds(2048, 20, 4, 3)
    assert PAILLIER_DEMO_ROUNDS < 30
    assert (
        main(["demo", "--protocol", "paillier", "--paillier-committee", "20", "--clients", "10"])
        == 1
    )
    assert main(["demo", "--paillier-key-bits", "2048", "--quiet"]) == 1
    assert "need --protocol paillier" in capsys.readouterr().err


def test_plot_title_and_epsilon_axis_name_the_setting_and_the_level() -> None:
    import argparse

    from secagg.demo import configure, epsilon_axis_label, plot_title

    parser = argparse.ArgumentParser()
    configure(parser)
    args = parser.parse_args(["--protocol", "secagg", "--dp", "central", "--dropout", "0.2"])
    title = plot_title(args, 50)
    assert "secagg + central DP" in title and "dropout 20%" in title and "NOT private" not in title
    assert "NOT private" in plot_title(parser.parse_args(["--reproducible"]), 50)
    assert epsilon_axis_label("sample", 0.01).startswith("sample-level epsilon")
    assert epsilon_axis_label("user", 0.001) == "user-level epsilon (delta = 1e-03)"
