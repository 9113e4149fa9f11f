"""The model-scale Paillier benchmark runs a real round and reports every stage (tiny d)."""

from __future__ import annotations

import pytest

from secagg.benchmarks.bench_paillier import main
from secagg.benchmarks.paillier_model_scale import MODEL_D, model_scale_table, run_model_scale


def test_model_scale_reports_every_stage_and_judges_the_ratio() -> None:
    result = run_model_scale(d=400, workers=2, progress=False)
    assert result["extrapolated"] and result["d_reported"] == MODEL_D
    stages = {r["metric"] for r in result["rows"]}
    for word in (
        "client encryption",
        "server verification + aggregation",
        "decryptor verification",
        "partial decryption + proof",
        "server verification of the partial decryptions",
        "combination",
        "decoding",
    ):
        assert any(name.startswith(word) for name in stages), word
    assert all(r["wall_s"] >= 0 and r["cpu_s"] >= 0 for r in result["rows"])
    ratio = result["ratio_row"]
    assert ratio["target_met"] in (True, False) and ratio["ratio"] > 0
    assert [r["s"] for r in result["dj_rows"]] == [1, 2, 3]
    assert result["dj_rows"][0]["ratio"] == 1.0
    assert "d = 1,000,000 (extrapolated linearly from d = 400)" in model_scale_table(result)


def test_model_scale_refuses_a_bad_size() -> None:
    with pytest.raises(SystemExit, match="--model-d"):
        main(["--model-scale", "--model-d", "0"])
