"""Classical comparison methods: FBP, SIRT, TV (Chambolle-Pock), Gaussian and BM3D post-filters,
and the tuning of their one parameter on the held-out slice."""

import dataclasses

import numpy as np
import pytest
from pydantic import ValidationError

from tomodenoise.methods import Context, parse_method
from tomodenoise.methods import classical
from tomodenoise.methods.classical import BM3D, FBP, SIRT, Gaussian
from tomodenoise.methods.sample import foam_scan
from tomodenoise.methods.tuning import choose_on_slice, fov_mask, oracle_search
from tomodenoise.methods.tv import ParallelOperator, TVRecon, tv_reconstruct
from tomodenoise.metrics import psnr
from tomodenoise.quality.gaussian import gaussian_slices
from tomodenoise.recon import forward_project, sirt

N = 32
KEEP = [0, 2]  # the reported slices; slice 1 is the tuning slice
MASK = fov_mask(N)


def _psnr_fov(ref, vol):
    return psnr(ref[:, MASK], vol[:, MASK])


@pytest.fixture(scope="module")
def scan():
    return foam_scan(0, n_slices=3, n_det=N, n_angles=96, i0=50)


@pytest.fixture(scope="module")
def results(scan):
    ctx = Context(tune_slice=1)
    return {name: parse_method(name).run(scan, ctx) for name in ("fbp", "sirt", "tv", "gaussian", "bm3d")}


def test_registry_round_trip():
    tv = parse_method({"method": "tv", "weight": 0.1})
    assert isinstance(tv, TVRecon) and tv.weight == 0.1 and tv.iterations == 100
    for name, cls in [("fbp", FBP), ("sirt", SIRT), ("gaussian", Gaussian), ("bm3d", BM3D), ("tv", TVRecon)]:
        cfg = parse_method(name)
        assert type(cfg) is cls
        assert parse_method(cfg.model_dump(mode="json")) == cfg
    assert parse_method({"method": "fbp", "filter": "hanning"}).filter == "hann"
    with pytest.raises(ValidationError):
        parse_method({"method": "fbp", "filter": "nope"})
    with pytest.raises(ValidationError):
        parse_method({"method": "sirt", "iterations": 0})
    with pytest.raises(ValidationError):
        parse_method({"method": "tv", "wieght": 1.0})


@pytest.mark.parametrize("center", [None, 14.3])
def test_projector_pair_is_adjoint_and_norm_bounds_it(center):
    rng = np.random.default_rng(3)
    angles = np.linspace(0, np.pi, 40, endpoint=False)
    with ParallelOperator(angles, N, center=center) as op:
        x = rng.standard_normal((N, N)).astype(np.float32)
        y = rng.standard_normal((angles.size, op.n_det)).astype(np.float32)
        lhs, rhs = float(np.vdot(op.forward(x), y)), float(np.vdot(x, op.adjoint(y)))
        assert abs(lhs - rhs) <= 0.03 * max(abs(lhs), abs(rhs))
        norm = op.norm()
        for _ in range(3):
            z = rng.standard_normal((N, N)).astype(np.float32)
            assert np.linalg.norm(op.forward(z)) <= norm * np.linalg.norm(z)
        ones = np.ones((N, N), np.float32)  # a smooth image is close to the top singular vector
        assert np.linalg.norm(op.forward(ones)) >= 0.5 * norm * np.linalg.norm(ones)
        if center is None:  # same projector and scale as recon.forward_project
            np.testing.assert_allclose(op.forward(x), forward_project(x, angles)[0], rtol=1e-4, atol=1e-3)


def _tv_objective(scan, x, weight):
    with ParallelOperator(scan.angles, N) as op:
        r = op.forward(x[0]) - scan.sino[0]
    gy, gx = np.diff(x[0], axis=0, append=x[0][-1:]), np.diff(x[0], axis=1, append=x[0][:, -1:])
    return 0.5 * float(np.sum(r.astype(np.float64) ** 2)) + weight * float(np.sum(np.hypot(gy, gx)))


def test_chambolle_pock_decreases_the_tv_objective(scan):
    one = scan.slices([1])
    w = 15.0
    start = np.maximum(one.fbp(), 0)
    f20, f100 = (_tv_objective(one, tv_reconstruct(one, w, k), w) for k in (20, 100))
    assert f100 < f20 < 0.8 * _tv_objective(one, start, w)
    # a larger weight gives a flatter image
    tvs = [np.abs(np.diff(tv_reconstruct(one, wt, 60)[0], axis=1)).sum() for wt in (3.0, 30.0, 300.0)]
    assert tvs[0] > tvs[1] > tvs[2]


def test_every_method_returns_the_scan_shape(scan, results):
    for name, res in results.items():
        assert res.volume.shape == scan.shape and res.volume.dtype == np.float32, name
        assert np.all(np.isfinite(res.volume)), name
    np.testing.assert_array_equal(results["fbp"].volume, scan.fbp())
    assert results["fbp"].params == {"filter": "ram-lak"}


@pytest.mark.parametrize("name", ["sirt", "tv", "gaussian", "bm3d"])
def test_tuned_methods_beat_fbp_on_the_reported_slices(scan, results, name):
    ref = scan.clean[KEEP]
    base = _psnr_fov(ref, results["fbp"].volume[KEEP])
    got = _psnr_fov(ref, results[name].volume[KEEP])
    assert got > base + 0.5, (name, got, base)


@pytest.mark.parametrize("name,param", [("sirt", "iterations"), ("tv", "weight"), ("gaussian", "sigma"),
                                        ("bm3d", "sigma_psd")])
def test_tuned_parameter_is_reported_with_its_slice(results, name, param):
    p = results[name].params
    assert p["tuned_on_slice"] == 1 and p["tuned_by"] == "psnr" and p["tuned_region"] == "fov"
    tried = dict((v, s) for v, s in p["tried"])
    assert len(tried) >= 4 and tried[p[param]] == p["tuned_score"] == max(tried.values())
    if name == "sirt":
        assert isinstance(p[param], int) and len(tried) == len(p["tried"])  # integers, each once


def test_tuning_score_is_measured_on_the_tuning_slice(scan, results):
    p = results["gaussian"].params
    vol = gaussian_slices(scan.fbp(), p["sigma"])
    on_slice = [_psnr_fov(scan.clean[[k]], vol[[k]]) for k in range(3)]
    assert p["tuned_score"] == pytest.approx(on_slice[1], abs=1e-9)
    assert abs(on_slice[0] - on_slice[1]) > 1e-3 and abs(on_slice[2] - on_slice[1]) > 1e-3


def test_bm3d_grid_is_around_the_noise_estimate(results):
    p = results["bm3d"].params
    assert p["sigma_estimate"] > 0
    assert any(v == pytest.approx(p["sigma_estimate"]) for v, _ in p["tried"])
    assert 0.1 * p["sigma_estimate"] < p["sigma_psd"] < 10 * p["sigma_estimate"]


def test_a_fixed_parameter_skips_tuning(scan, monkeypatch):
    def no_tuning(*a, **k):
        raise AssertionError("tuning ran although the parameter was fixed")

    monkeypatch.setattr(classical, "choose_on_slice", no_tuning)
    monkeypatch.setattr("tomodenoise.methods.tv.choose_on_slice", no_tuning)
    ctx = Context(tune_slice=1)
    res = SIRT(iterations=7).run(scan, ctx)
    assert res.params == {"iterations": 7, "min_constraint": None}
    np.testing.assert_array_equal(res.volume, sirt(scan.sino, scan.angles, iterations=7))
    res = Gaussian(sigma=1.2).run(scan, ctx)
    assert res.params == {"sigma": 1.2}
    np.testing.assert_array_equal(res.volume, gaussian_slices(scan.fbp(), 1.2))
    res = TVRecon(weight=5.0, iterations=10).run(scan, ctx)
    assert res.params == {"iterations": 10, "nonneg": True, "weight": 5.0}
    np.testing.assert_allclose(res.volume, tv_reconstruct(scan, 5.0, 10), atol=1e-6)


def test_one_slice_scan_tunes_on_its_only_slice():
    one = foam_scan(1, n_slices=1, n_det=N, n_angles=48, i0=50)
    res = Gaussian().run(one, Context(tune_slice=-1))
    assert res.params["tuned_on_slice"] == 0 and "not held out" in res.params["tuning_note"]
    assert res.volume.shape == one.shape


def test_without_a_reference_tuning_uses_umse_and_still_improves(scan):
    blind = dataclasses.replace(scan, clean=None, _cache={})
    res = Gaussian().run(blind, Context(tune_slice=1))
    assert res.params["tuned_by"] == "umse" and res.params["tuned_on_slice"] == 1
    ref = scan.clean[KEEP]
    assert _psnr_fov(ref, res.volume[KEEP]) > _psnr_fov(ref, scan.fbp()[KEEP]) + 0.5
    # lower uMSE is better: the chosen value has the smallest one
    tried = dict((v, s) for v, s in res.params["tried"])
    assert tried[res.params["sigma"]] == min(tried.values())
    with pytest.raises(ValueError, match="needs scan.clean"):
        choose_on_slice(lambda v, s: s.fbp(), [1.0, 2.0], blind, Context(tune_slice=1), by="psnr")
    with pytest.raises(ValueError, match="outside"):
        choose_on_slice(lambda v, s: s.fbp(), [1.0, 2.0], scan, Context(tune_slice=5))


def test_oracle_search_extends_past_an_edge_and_refines_around_the_peak():
    seen = []

    def peak_at_7(v):
        seen.append(v)
        return -(np.log(v) - np.log(7.0)) ** 2

    best, value, tried = oracle_search(peak_at_7, [0.5, 1.0, 2.0], refine=4)
    assert max(p for p, _ in tried) >= 8.0  # the best was at the top edge: the grid grew past the peak
    assert abs(best - 7.0) < 1.0 and value == max(v for _, v in tried)
    assert [p for p, _ in tried] == sorted(set(seen))  # sorted, each point evaluated once
    best, _, _ = oracle_search(lambda v: -abs(v - 3.0), [1.0, 2.0, 5.0], refine=3, log=False)
    assert best == pytest.approx(3.0, abs=0.5)


def test_integer_search_with_bounds_finds_the_peak(scan):
    noise = np.random.default_rng(0).standard_normal(scan.shape[1:]).astype(np.float32)
    calls = []

    def run_with(v, s):
        calls.append(v)
        assert s.shape[0] == 1  # only the tuning slice
        return s.clean + noise * (0.01 + abs(v - 37) / 100)

    got = choose_on_slice(run_with, [10, 20, 40, 80], scan, Context(tune_slice=2), integer=True, bounds=(1, 60))
    values = [v for v, _ in got.tried]
    assert all(isinstance(v, int) and 1 <= v <= 60 for v in values) and len(set(calls)) == len(calls)
    assert abs(got.value - 37) <= 4 and got.slice == 2 and got.by == "psnr"


@pytest.mark.parametrize("which", ["tv", "bm3d"])
def test_unsupervised_tuning_scales_the_parameter_to_the_number_of_projections(which, monkeypatch):
    """Tuned without a reference, on 3 of 6 angle groups: every trial on the subset gets the
    tried value rescaled (TV: n/n_full, BM3D: sqrt(n_full/n)); the full scan gets it as is."""
    from tomodenoise.methods import tv as tv_module

    calls: list[tuple[int, float]] = []
    if which == "tv":
        def fake(s, w, iterations, nonneg):
            calls.append((s.angles.size, float(w)))
            return s.fbp() / (1.0 + w)
        monkeypatch.setattr(tv_module, "tv_reconstruct", fake)
        spec, name, scale = {"method": "tv", "grid": [0.5, 2.0]}, "weight", lambda n, full: n / full
    else:
        def fake_bm3d(vol, sigma):
            calls.append((-1, float(sigma)))
            return vol / (1.0 + sigma)
        monkeypatch.setattr(classical, "bm3d_filter", fake_bm3d)
        spec, name, scale = {"method": "bm3d"}, "sigma_psd", lambda n, full: (full / n) ** 0.5
    scan = dataclasses.replace(foam_scan(0, n_slices=2, n_det=16, n_angles=48), clean=None, _cache={})
    res = parse_method(spec).run(scan, Context(seed=0, tune_slice=0))
    assert res.params["tuned_by"] == "umse"
    tried = {round(v, 9) for v, _ in res.params["tried"]}
    assert calls[-1][1] == pytest.approx(res.params[name])  # the full scan: as tuned
    factor = scale(24, 48)  # the subset: 3 of 6 groups = 24 of 48 projections
    assert all(round(w / factor, 9) in tried for _, w in calls[:-1])
    assert factor != 1.0


def test_sirt_tuning_continues_from_the_counts_already_run(monkeypatch):
    """Each tried count continues the nearest smaller one already run: the tuning costs about
    its largest count instead of the sum of all it tried, and the result equals SIRT from zero."""
    from tomodenoise.recon import sirt as sirt_from_zero

    ran: list[int] = []
    real = classical.sirt

    def counting(*a, iterations, **k):
        ran.append(iterations)
        return real(*a, iterations=iterations, **k)

    monkeypatch.setattr(classical, "sirt", counting)
    scan = foam_scan(1, n_slices=2, n_det=16, n_angles=32)
    res = SIRT(grid=[4, 8, 16], max_iterations=32).run(scan, Context(seed=0, tune_slice=0))
    tried = [int(v) for v, _ in res.params["tried"]]
    final = res.params["iterations"]
    assert ran[-1] == final  # the whole scan, from zero
    tuning = sum(ran[:-1])
    assert max(tried) <= tuning < 0.5 * sum(tried), (ran, tried)
    np.testing.assert_array_equal(res.volume, sirt_from_zero(scan.sino, scan.angles, iterations=final))
