"""benchmarks/lipsync_seeds.py: mean and spread of the lip-sync measures over runs, from their evaluation files."""

from __future__ import annotations

import json
import math

import pytest


def _run(folder, r_jaw, closure=None):
    (folder / "evaluation").mkdir(parents=True)
    real = {"sta": {"r_jaw": r_jaw, "closure_jaw": closure}, "loudness": {"r_jaw": 0.1}}
    results = {"lipsync": {"real speech": real, "validation": {"sta": {"r_jaw": r_jaw + 0.1}}}}
    (folder / "evaluation" / "results.json").write_text(json.dumps(results))
    return folder


def test_groups_average_the_sta_rows_of_their_runs(repo_script, tmp_path, capsys):
    module = repo_script("benchmarks/lipsync_seeds.py")
    a = [_run(tmp_path / f"a{i}", r, c) for i, (r, c) in enumerate([(0.6, 0.4), (0.8, None)])]
    b = [_run(tmp_path / "b0", 0.5, 0.9)]
    summary = module.summarise([("a", a), ("b", b)], ("real speech", "validation"))
    mean, std, n = summary["real speech"]["a"]["r_jaw"]
    assert (mean, n) == (pytest.approx(0.7), 2) and std == pytest.approx(math.sqrt(0.02))
    closure_mean, _, closure_runs = summary["real speech"]["a"]["closure_jaw"]
    assert (closure_mean, closure_runs) == (0.4, 1), "a run without the measure does not count"
    assert math.isnan(summary["real speech"]["b"]["r_jaw"][1]), "one run has no spread"
    assert math.isnan(summary["validation"]["b"]["closure_jaw"][0]), "missing everywhere -> NaN"
    module.main(["a=" + ",".join(map(str, a)), "b=" + str(b[0]), "--sets", "real speech"])
    table = capsys.readouterr().out
    assert "| real speech | a | 2 | 0.700 ± 0.141 |" in table and "| real speech | b | 1 | 0.500 |" in table


def test_bad_groups_and_missing_runs_are_named(repo_script, tmp_path):
    module = repo_script("benchmarks/lipsync_seeds.py")
    with pytest.raises(SystemExit):
        module.main(["no-equals-sign"])
    with pytest.raises(FileNotFoundError, match="has no evaluation"):
        module.summarise([("x", [tmp_path / "missing"])])
