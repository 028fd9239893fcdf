"""The comparison: both runs of every method, the table, the panel, skipped and failed rows."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from tomodenoise.methods import Scan, parse_method, parse_methods
from tomodenoise.methods.compare import compare, rank_check, Row, upsnr_split
from tomodenoise.methods.sample import foam_scan


@pytest.fixture(scope="module")
def scan() -> Scan:
    return foam_scan(0, n_slices=3, n_det=32, n_angles=96, i0=50)


def test_parse_methods_names_dicts_and_errors():
    ms = parse_methods("fbp,gaussian")
    assert [m.label for m in ms] == ["fbp", "gaussian"]
    assert type(parse_method({"method": "gaussian", "name": "g2"})).__name__ == "Gaussian"
    with pytest.raises(ValueError, match="unknown method 'nope'.*valid methods: fbp"):
        parse_method("nope")
    with pytest.raises(ValueError, match="given twice: fbp"):
        parse_methods(["fbp", {"method": "fbp"}])
    with pytest.raises(ValueError):  # strict: an unknown parameter is an error
        parse_method({"method": "fbp", "wieght": 1})


def test_upsnr_split_holds_out_three_groups(scan):
    seen, held = upsnr_split(scan, 6)
    assert seen.angles.size == scan.angles.size // 2 and len(held) == 3
    held_angles = set(np.round(np.concatenate([scan.angles[g::6] for g in (3, 4, 5)]), 9))
    assert not set(np.round(seen.angles, 9)) & held_angles
    assert len(set(np.round(seen.angles, 9)) | held_angles) == scan.angles.size


def test_compare_writes_table_panel_and_ranks(tmp_path, scan):
    lines: list[str] = []
    res = compare(scan, ["fbp", {"method": "gaussian"}], tmp_path, steps=5, log=lines.append)
    rows = {r["label"]: r for r in res["rows"]}
    assert rows["fbp"]["status"] == rows["gaussian"]["status"] == "ok"
    assert rows["gaussian"]["psnr"] > rows["fbp"]["psnr"] + 1  # a tuned filter beats the FBP on this noise
    assert rows["gaussian"]["upsnr"] > rows["fbp"]["upsnr"]    # and uPSNR sees it without the reference
    assert res["reported_slices"] == [1, 2] and res["tune_slice"] == 0
    assert (tmp_path / "panel.png").stat().st_size > 1000
    md = (tmp_path / "compare.md").read_text()
    assert "| gaussian |" in md and "uPSNR" in md
    assert json.loads((tmp_path / "compare.json").read_text())["rows"][0]["label"] == "fbp"
    assert lines[0].startswith("[1/2] fbp: PSNR") and lines[-1].startswith("[2/2] gaussian: PSNR")
    assert any(line.startswith("gaussian: sigma=") for line in lines)  # the tuned parameter is told


def test_methods_that_need_what_the_scan_lacks_are_skipped(tmp_path, scan):
    bare = replace(scan, clean=None, second=None, _cache={})
    res = compare(bare, ["fbp", "supervised", "noise2noise"], tmp_path, steps=5)
    rows = {r["label"]: r for r in res["rows"]}
    assert rows["supervised"]["status"] == "skipped" and "clean reference" in rows["supervised"]["reason"]
    assert rows["noise2noise"]["status"] == "skipped" and "repeat scan" in rows["noise2noise"]["reason"]
    assert rows["fbp"]["psnr"] is None and rows["fbp"]["upsnr"] is not None  # no reference: uPSNR only


def test_a_failing_method_is_reported_and_the_others_go_on(tmp_path, scan):
    bad = parse_method({"method": "sirt", "iterations": 5})
    object.__setattr__(bad, "run", lambda s, c: (_ for _ in ()).throw(RuntimeError("boom")))
    res = compare(scan, [bad, "fbp"], tmp_path, steps=5)
    assert [r["status"] for r in res["rows"]] == ["failed", "ok"]
    assert "boom" in res["rows"][0]["reason"] and (tmp_path / "work" / "sirt" / "error.txt").is_file()


def test_rank_check_counts_snapshots():
    rows = [Row("a", "a", upsnr=10, psnr_eval=11), Row("b", "b", upsnr=12, psnr_eval=13),
            Row("c", "c", upsnr=11, psnr_eval=12, snapshots=[{"upsnr": 9, "psnr_eval": 10}])]
    rc = rank_check(rows)
    assert rc["points"] == 4 and rc["spearman"] == pytest.approx(1.0)


def test_compare_command_on_a_simulated_scan(tmp_path, capsys):
    from tomodenoise.cli import main
    from tomodenoise.simulate.scan import simulate_foam_scan

    path = simulate_foam_scan(tmp_path / "foam.h5", size=32, n_angles=64, n_slices=3, i0=100.0, seed=1,
                              n_spheres=30)["scan"]
    out = tmp_path / "cmp"
    assert main(["compare", str(path), "--methods", "fbp,gaussian", "--out", str(out), "--steps", "5"]) == 0
    printed = capsys.readouterr()
    assert "reference: yes" in printed.out + printed.err  # <stem>_clean.npy found beside the scan
    assert "[2/2] gaussian: PSNR" in printed.out + printed.err
    assert (out / "compare.md").is_file() and (out / "panel.png").is_file() and (out / "compare.log").is_file()
    assert main(["compare", str(path), "--methods", "fbp,nope", "--out", str(out)]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err


def test_tomogan_with_a_repeat_scan_target_needs_the_repeat_not_the_clean(tmp_path, scan):
    from tomodenoise.methods.compare import compare as run

    bare = replace(scan, clean=None, second=None, _cache={})
    gan = {"method": "tomogan", "target": "second", "name": "gan_n2n"}
    assert parse_method(gan).required() == ("second",) and parse_method("tomogan").required() == ("clean",)
    rows = {r["label"]: r for r in run(bare, [gan, "fbp"], tmp_path, steps=2)["rows"]}
    assert rows["gan_n2n"]["status"] == "skipped" and "repeat scan" in rows["gan_n2n"]["reason"]
    assert "clean" not in rows["gan_n2n"]["reason"]


def test_symmetric_upsnr_is_closer_to_the_truth_than_one_assignment():
    """Three noisy copies of a known image: the averaged uMSE estimate of a fixed image's error
    is nearer the true MSE (over many draws) than the single-assignment one."""
    from tomodenoise.metrics import umse
    from tomodenoise.methods.compare import symmetric_upsnr

    rng = np.random.default_rng(0)
    truth = rng.uniform(0, 1, (2, 40, 40))
    f = truth + rng.normal(0, 0.1, truth.shape)
    mse = float(np.mean((f - truth) ** 2))
    one, avg = [], []
    for _ in range(40):
        held = [truth + rng.normal(0, 0.3, truth.shape) for _ in range(3)]
        one.append(umse(f, *held))
        u = 10 ** (-symmetric_upsnr(f, held, 1.0) / 10)
        avg.append(u)
    err_one, err_avg = np.std(np.array(one) - mse), np.std(np.array(avg) - mse)
    assert err_avg < 0.75 * err_one, (err_avg, err_one)
    assert abs(np.mean(avg) - mse) < 3 * err_avg / np.sqrt(40)  # unbiased
    assert np.isnan(symmetric_upsnr(truth, [truth, truth + 1, truth - 1], 1.0))  # non-positive estimate


def test_compare_on_one_slice_and_an_angle_count_not_divisible_by_six(tmp_path):
    one = foam_scan(2, n_slices=1, n_det=24, n_angles=50, i0=50)
    res = compare(one, ["fbp", "gaussian"], tmp_path, steps=2)
    assert res["tune_slice"] == -1 and res["reported_slices"] == [0]
    rows = {r["label"]: r for r in res["rows"]}
    assert all(r["status"] == "ok" for r in rows.values())
    assert rows["gaussian"]["params"].get("tuning_note", "").startswith("one-slice scan")
    assert rows["gaussian"]["upsnr"] is not None


def test_a_rerun_reuses_finished_methods_and_reruns_changed_ones(tmp_path, scan, monkeypatch):
    from tomodenoise.methods.classical import Gaussian

    calls = []
    real = Gaussian.run
    monkeypatch.setattr(Gaussian, "run", lambda self, s, c: calls.append(self.sigma) or real(self, s, c))
    lines: list[str] = []
    first = compare(scan, ["fbp", {"method": "gaussian", "sigma": 1.0}], tmp_path, steps=3)
    assert len(calls) == 2  # full run and uPSNR run
    again = compare(scan, ["fbp", {"method": "gaussian", "sigma": 1.0}], tmp_path, steps=3, log=lines.append)
    assert len(calls) == 2 and "reused" in lines[-1]
    assert again["rows"] == first["rows"]
    assert (tmp_path / "work" / "gaussian" / "volume.npy").is_file()
    compare(scan, [{"method": "gaussian", "sigma": 2.0}], tmp_path, steps=3)  # another config: run again
    assert calls[2:] == [2.0, 2.0]
    compare(scan, [{"method": "gaussian", "sigma": 2.0}], tmp_path, steps=3, resume=False)
    assert len(calls) == 6
