"""Several seeds: rows merged to means with 90% intervals, verdicts decided on the interval.

The cells here are fast stand-ins whose values depend on ``ctx.config.seed``; the merge and
its verdicts are what is tested, not an attack.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from secagg.cli import evaluate as cli
from secagg.cli import main
from secagg.errors import InvalidParameterError
from threat_models.evaluation import (
    CELLS,
    TABLE_WIDTH,
    CellOutput,
    EvaluationConfig,
    EvaluationContext,
    EvaluationResult,
    Expectation,
    Family,
    Figure,
    Protection,
    Row,
    run_evaluation,
    summary_table,
)
from threat_models.evaluation import seeds as seeds_module
from threat_models.evaluation.context import Cell
from threat_models.evaluation.matrix import _time_left
from threat_models.evaluation.seeds import (
    INTERVAL_RULE,
    interval_verdict,
    merge_seeds,
    t_interval,
)
from threat_models.evaluation.table import VERDICT_LEGEND, seeds_legend

THRESHOLD = 20.0
#: t(0.95, 2), from a printed table of Student's t
T_95_DF2 = 2.919986


def _row(
    value: float,
    *,
    attack: str = "a",
    expected: bool | None = False,
    control: bool = False,
    threshold: float | None = THRESHOLD,
    succeeded: bool | None = None,
    metric: str = "best_psnr_db",
    baseline: float | None = 10.0,
    epsilon: float | None = None,
    accuracy: float | None = None,
) -> Row:
    """A row whose verdict is its threshold on ``value`` (or ``succeeded`` when given)."""
    verdict = succeeded if succeeded is not None else threshold is not None and value >= threshold
    return Row(
        Family.PROTOCOL_LEVEL,  # no model is trained for these rows
        attack,
        "secure aggregation + distributed DP" if not control else "none",
        "s",
        metric,
        value,
        baseline,
        "dataset mean",
        verdict,
        expected,
        positive_control=control,
        protection=Protection.NONE if control else Protection.SECURE_AGGREGATION_DP,
        threshold=threshold,
        epsilon=epsilon,
        accuracy=accuracy,
    )


def _cell(rows_of: Callable[[int], Sequence[Row]], name: str = "stand-in") -> Cell:
    """A cell whose rows are ``rows_of(seed)``."""

    def run(ctx: EvaluationContext) -> CellOutput:
        fig = Figure(f"fig_seed{ctx.config.seed}", "t", "x", "y", ())
        return CellOutput(tuple(rows_of(ctx.config.seed)), figures=(fig,))

    return (name, Family.MODEL_LEVEL, run)


def _run(rows_of: Callable[[int], Sequence[Row]], seeds: int = 3) -> EvaluationResult:
    config = EvaluationConfig(quick=True, seeds=seeds)
    return run_evaluation(
        config, progress=False, cells=(_cell(rows_of),), aggregator=(_no_sum, "none")
    )


def _no_sum(updates: Mapping[int, npt.NDArray[np.float64]]) -> npt.NDArray[np.float64]:
    raise AssertionError("the stand-in cells compute no secure sum")


def _by_seed(values: Mapping[int, float], **kwargs: object) -> Callable[[int], list[Row]]:
    def rows_of(seed: int) -> list[Row]:
        return [_row(values[seed], **kwargs)]  # type: ignore[arg-type]

    return rows_of


# ---------------------------------------------------------------------------- the merge
def test_the_merged_row_is_the_mean_with_its_student_t_interval() -> None:
    values = {0: 10.0, 1: 12.0, 2: 17.0}
    result = _run(_by_seed(values))
    (row,) = result.rows
    assert row.seeds == 3 and row.value == pytest.approx(13.0)
    # by hand: s = sqrt(13), half = t(0.95, 2) * s / sqrt(3)
    half = T_95_DF2 * math.sqrt(13.0) / math.sqrt(3.0)
    assert row.ci_low == pytest.approx(13.0 - half, rel=1e-6)
    assert row.ci_high == pytest.approx(13.0 + half, rel=1e-6)
    try:
        from scipy import stats
    except ImportError:  # pragma: no cover - scipy is a core dependency
        return
    ci = stats.ttest_1samp(list(values.values()), 0.0).confidence_interval(0.90)
    assert (row.ci_low, row.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-9)


def test_agreeing_seeds_give_a_point_interval_and_one_value_none() -> None:
    assert t_interval([3.5, 3.5, 3.5]) == (3.5, 3.5)
    assert t_interval([math.inf, math.inf]) == (math.inf, math.inf)
    assert t_interval([2.0]) is None
    assert t_interval([1.0, math.inf]) is None
    with pytest.raises(InvalidParameterError):
        t_interval([])
    (row,) = _run(_by_seed({0: 25.0, 1: 25.0}), seeds=2).rows
    assert (row.value, row.ci_low, row.ci_high, row.seeds) == (25.0, 25.0, 25.0, 2)
    (single,) = _run(_by_seed({0: 25.0}), seeds=1).rows
    assert single.seeds == 1 and single.ci_low is None and single.ci_high is None


def test_baseline_epsilon_and_accuracy_are_means_where_present() -> None:
    def rows_of(seed: int) -> list[Row]:
        return [
            _row(
                5.0 + seed,
                baseline=[10.0, 12.0, None][seed],
                epsilon=[30.0, 36.0, 33.0][seed],
                accuracy=None if seed == 0 else 0.8 + 0.1 * seed,
            )
        ]

    (row,) = _run(rows_of).rows
    assert row.baseline == pytest.approx(11.0)
    assert row.epsilon == pytest.approx(33.0)
    assert row.accuracy == pytest.approx(0.95)


def test_a_row_missing_in_one_seed_keeps_the_count_of_the_others() -> None:
    def rows_of(seed: int) -> list[Row]:
        rows = [_row(10.0 + seed, attack="always")]
        if seed != 1:
            rows.append(_row(11.0 + seed, attack="not in seed 1"))
        if seed == 1:
            rows.append(_row(12.0, attack="only in seed 1"))
        return rows

    rows = {r.attack: r for r in _run(rows_of).rows}
    assert rows["always"].seeds == 3
    assert rows["not in seed 1"].seeds == 2 and rows["not in seed 1"].value == 12.0
    assert rows["only in seed 1"].seeds == 1 and rows["only in seed 1"].ci_low is None


def test_equal_keys_match_by_their_rank_within_the_run() -> None:
    def rows_of(seed: int) -> list[Row]:
        return [_row(10.0 + seed), _row(100.0 + seed)]  # same key twice

    first, second = _run(rows_of).rows
    assert first.value == pytest.approx(11.0) and second.value == pytest.approx(101.0)
    assert first.seeds == second.seeds == 3


# ----------------------------------------------------------------- verdicts on the interval
def test_a_defended_row_leaking_in_one_seed_is_reported_as_leaking() -> None:
    result = _run(_by_seed({0: 12.0, 1: 14.0, 2: 25.0}))
    (row,) = result.rows
    assert row.value == pytest.approx(17.0) and row.value < THRESHOLD  # the mean hides it
    assert row.succeeded and row.expectation is Expectation.REGRESSION
    assert result.unexpected == (row,)
    assert result.not_stopped_by_secure_aggregation() == (row,)
    # positive control: the same rows stopped on all three seeds read stopped
    (stopped,) = _run(_by_seed({0: 12.0, 1: 14.0, 2: 13.0})).rows
    assert not stopped.succeeded and stopped.expectation is Expectation.MET
    assert stopped.ci_high is not None and stopped.ci_high < THRESHOLD


def test_the_mean_rule_would_have_hidden_the_leaking_seed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The check above catches a weakened rule: the mean against the threshold."""

    def mean_rule(
        *, interval: tuple[float, float] | None, threshold: float | None, **_: object
    ) -> bool:
        assert interval is not None and threshold is not None
        return (interval[0] + interval[1]) / 2 >= threshold

    monkeypatch.setattr(seeds_module, "interval_verdict", mean_rule)
    (row,) = _run(_by_seed({0: 12.0, 1: 14.0, 2: 25.0})).rows
    assert not row.succeeded and row.expectation is Expectation.MET


def test_a_defended_row_whose_interval_reaches_the_threshold_is_not_stopped() -> None:
    # every seed stopped, by thin margins: the interval reaches 20 dB, so no claim of "stopped"
    (thin,) = _run(_by_seed({0: 10.0, 1: 19.0, 2: 19.5})).rows
    assert thin.ci_high is not None and thin.ci_high >= THRESHOLD
    assert thin.succeeded and thin.expectation is Expectation.REGRESSION
    (clear,) = _run(_by_seed({0: 12.0, 1: 12.5, 2: 13.0})).rows
    assert not clear.succeeded


def test_a_positive_control_failing_on_one_seed_fails_the_controls() -> None:
    failing = _run(_by_seed({0: 35.0, 1: 33.0, 2: 15.0}, expected=True, control=True))
    (row,) = failing.rows
    assert not row.succeeded and row.expectation is Expectation.CONTROL_FAILED
    assert not failing.controls_passed
    # positive control: passing on every seed passes
    passing = _run(_by_seed({0: 35.0, 1: 33.0, 2: 31.0}, expected=True, control=True))
    assert passing.controls_passed and passing.rows[0].succeeded
    # succeeding on every seed is not enough when the interval reaches below the threshold
    wide = _run(_by_seed({0: 21.0, 1: 40.0, 2: 60.0}, expected=True, control=True))
    assert wide.rows[0].ci_low is not None and wide.rows[0].ci_low < THRESHOLD
    assert not wide.controls_passed


def test_threshold_below_reads_the_other_end_of_the_interval() -> None:
    def rows_of(values: Mapping[int, float], expected: bool) -> Callable[[int], list[Row]]:
        def make(seed: int) -> list[Row]:
            row = _row(values[seed], expected=expected, control=expected, threshold=None)
            v = values[seed]
            return [replace(row, threshold=0.5, threshold_above=False, succeeded=v <= 0.5)]

        return make

    # a control succeeding when the error is at most 0.5: the interval's top must be there
    (ok,) = _run(rows_of({0: 0.1, 1: 0.12, 2: 0.11}, True)).rows
    assert ok.succeeded
    (wide,) = _run(rows_of({0: 0.1, 1: 0.45, 2: 0.2}, True)).rows
    assert wide.ci_high is not None and wide.ci_high > 0.5 and not wide.succeeded
    # a defended row: its interval's bottom reaching 0.5 reads succeeded
    (leaky,) = _run(rows_of({0: 0.9, 1: 0.55, 2: 0.8}, False)).rows
    assert leaky.ci_low is not None and leaky.ci_low <= 0.5 and leaky.succeeded
    (held,) = _run(rows_of({0: 0.9, 1: 0.91, 2: 0.92}, False)).rows
    assert not held.succeeded


@pytest.mark.parametrize(
    ("verdicts", "expected", "merged"),
    [
        ((True, True, True), True, True),
        ((True, False, True), True, False),  # a control needs every seed
        ((False, False, True), False, True),  # any seed leaking leaks
        ((False, False, False), False, False),
        ((False, True, False), None, True),  # no claim: any seed
        ((False, False, False), None, False),
    ],
)
def test_rows_without_threshold_follow_all_or_any_seed(
    verdicts: tuple[bool, bool, bool], expected: bool | None, merged: bool
) -> None:
    def rows_of(seed: int) -> list[Row]:
        return [
            _row(
                float(verdicts[seed]),
                expected=expected,
                control=expected is True,
                threshold=None,
                succeeded=verdicts[seed],
                metric="round_aborted",
            )
        ]

    result = _run(rows_of)
    (row,) = result.rows
    assert row.succeeded is merged and row.threshold is None
    if expected is True:
        assert result.controls_passed is merged


def test_interval_verdict_refuses_no_seed() -> None:
    with pytest.raises(InvalidParameterError):
        interval_verdict(succeeded=(), expected=None, interval=None, threshold=None)
    with pytest.raises(InvalidParameterError):
        seeds_module.merge_rows(())
    assert merge_seeds([[], []]) == ()


# ------------------------------------------------------------ one seed equals one run
def _mixed(seed: int) -> list[Row]:
    return [
        _row(19.9 + seed),
        _row(25.0 + seed, expected=True, control=True),
        _row(30.0, succeeded=False, threshold=None, metric="psnr_db"),  # the verdict is not
        # a threshold on this value: the cell's verdict stays
        _row(1.0, expected=None, succeeded=True, threshold=None, metric="round_aborted"),
    ]


def test_one_seed_reproduces_the_single_run_verdicts_exactly() -> None:
    config = EvaluationConfig(quick=True, seeds=1)
    direct = _cell(_mixed)[2](EvaluationContext(config, _no_sum, "none")).rows
    result = _run(_mixed, seeds=1)
    assert result.rows == direct
    assert all(r.seeds == 1 and r.ci_low is None and r.ci_high is None for r in result.rows)
    payload = result.to_json()
    assert payload["seeds"] == [0] and payload["interval_rule"] == INTERVAL_RULE
    rows = payload["rows"]
    assert isinstance(rows, list) and all(r["ci_low"] is None for r in rows)


# ------------------------------------------------------------------- the run and its output
def test_config_seeds_default_and_validation() -> None:
    assert EvaluationConfig(quick=True).seeds == 1
    assert EvaluationConfig().seeds == 3
    assert EvaluationConfig(seed=5, seeds=3).seed_values == (5, 6, 7)
    assert replace(EvaluationConfig(quick=True, seeds=4), seed=9).seeds == 4
    for bad in (0, -1, True, 2.0):
        with pytest.raises(InvalidParameterError):
            EvaluationConfig(seeds=bad)  # type: ignore[arg-type]


def test_the_run_keeps_the_first_seeds_pictures_and_sums_the_time() -> None:
    result = _run(_by_seed({0: 1.0, 1: 2.0, 2: 3.0}))
    assert [f.name for f in result.figures] == ["fig_seed0"]
    assert set(result.seconds) == {"stand-in"} and result.seconds["stand-in"] >= 0.0
    assert result.seeds == (0, 1, 2) and result.to_json()["seeds"] == [0, 1, 2]


def test_a_cell_broken_on_one_seed_is_reported_with_its_seed() -> None:
    def rows_of(seed: int) -> list[Row]:
        if seed == 1:
            raise RuntimeError("boom")
        return [_row(25.0, expected=True, control=True)]

    result = _run(rows_of)
    assert result.errors == {"stand-in": "seed 1: RuntimeError: boom"}
    assert not result.controls_passed
    assert result.rows[0].seeds == 2


def test_time_left_counts_every_remaining_step_at_the_first_seeds_pace() -> None:
    first = {"a": 10.0, "b": 2.0, "c": 1.0}
    names = ["a", "b", "c"]
    assert _time_left(first, names, 1, 0, 3) == 26.0  # all of seed 1 and seed 2
    assert _time_left(first, names, 1, 2, 3) == 14.0  # c of seed 1, then seed 2
    assert _time_left(first, names, 2, 2, 3) == 1.0


def test_the_table_shows_the_interval_within_100_columns() -> None:
    result = _run(_by_seed({0: 12.0, 1: 14.0, 2: 25.0}))
    text = summary_table(result)
    assert max(len(line) for line in text.splitlines()) <= TABLE_WIDTH
    row = result.rows[0]
    assert row.ci_low is not None and row.ci_high is not None
    half = (row.ci_high - row.ci_low) / 2
    assert f"17 ±{half:.1f}" in text
    markdown = summary_table(result, markdown=True)
    assert f"| 17 ±{half:.1f} |" in markdown
    legend = seeds_legend(result.seeds)
    assert legend.startswith("values: means over 3 seeds (0 to 2)") and "90%" in legend
    assert INTERVAL_RULE[1:] in VERDICT_LEGEND[0]
    assert "no interval" in seeds_legend((4,))


def test_secagg_evaluate_refuses_zero_seeds(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--quick", "--seeds", "0", "--no-progress"])
    assert exit_info.value.code == 2
    assert "--seeds" in capsys.readouterr().err


def test_secagg_evaluate_writes_the_seeds_and_intervals(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI's seeds reach the run, the printed legend and the JSON (stand-in cells)."""
    seen: list[EvaluationConfig] = []

    def stand_in(config: EvaluationConfig, *, progress: bool | None = None) -> EvaluationResult:
        seen.append(config)
        values = {s: 30.0 + s % 2 for s in range(5)}  # half = t(0.95, 1) * 1 / 2 = 3.16
        cells = (_cell(_by_seed(values, expected=True, control=True)),)
        return run_evaluation(config, progress=progress, cells=cells, aggregator=(_no_sum, "x"))

    monkeypatch.setattr(cli, "run_evaluation", stand_in)
    out = tmp_path / "rows.json"
    argv = ["evaluate", "--quick", "--seeds", "2", "--seed", "3", "--json", str(out)]
    assert main([*argv, "--no-progress"]) == 0
    assert seen[0].seeds == 2 and seen[0].seed_values == (3, 4)
    printed = capsys.readouterr().out
    assert "values: means over 2 seeds (3 to 4)" in printed.replace("\n  ", " ")
    assert "seeds 3, 4;" in printed and "30.5 ±3.16" in printed
    payload = json.loads(out.read_text())
    assert payload["seeds"] == [3, 4] and payload["seed"] == 3
    assert payload["interval_rule"] == INTERVAL_RULE
    assert payload["controls_passed"] is True
    (row,) = payload["rows"]
    assert row["seeds"] == 2 and row["value"] == 30.5 and row["ci_low"] > 20.0
    assert main(["evaluate", "--quick", "--no-progress"]) == 0
    assert seen[1].seeds == 1 and seen[1].seed_values == (0,)  # the quick default


def test_real_cells_match_their_rows_across_seeds() -> None:
    """Every row of a real cell is found in both seeds (no seed-dependent key)."""
    cells = [c for c in CELLS if c[0] == "model inconsistency"]
    result = run_evaluation(
        EvaluationConfig(quick=True, seeds=2, families=frozenset({Family.MODEL_LEVEL})),
        progress=False,
        cells=cells,
    )
    assert not result.errors
    assert result.rows and all(r.seeds == 2 for r in result.rows)
    assert all(
        r.ci_low is not None and r.ci_high is not None and r.ci_low <= r.value <= r.ci_high
        for r in result.rows
        if math.isfinite(r.value)
    )
