"""The quality check without ground truth: three figures, held-out N2I losses and the verdict."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tomodenoise.config import ModelConfig, TrainConfig
from tomodenoise.models import build_model
from tomodenoise.quality import gaussian_slices, heldout_losses, quality_figures, quality_verdict, tune_gaussian
from tomodenoise.quality.report import below_baseline_message, quality_markdown
from tomodenoise.train import load_checkpoint, train_n2i


def _discs(n=64, z=6, k=4, sigma=0.4, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n, :n]
    clean = np.zeros((z, n, n), np.float32)
    for i in range(z):
        clean[i] = ((yy - n / 2) ** 2 + (xx - n / 2 - 2 * i) ** 2 < (0.22 * n) ** 2).astype(np.float32)
        clean[i] += 0.5 * (((yy - 0.4 * n) ** 2 + (xx - 0.45 * n) ** 2) < (0.06 * n) ** 2)
    return clean, (clean[None] + rng.normal(0, sigma, (k, z, n, n))).astype(np.float32)


def test_figures_tell_a_good_result_from_a_lost_object():
    clean, sp = _discs()
    good = quality_figures(sp, clean)
    assert good.contrast_kept == pytest.approx(1.0, abs=0.05)
    assert good.noise_removed == pytest.approx(1.0, abs=0.1)  # all of the noise and nothing else
    assert good.edge_gradient_kept > 0.8
    fbp = quality_figures(sp, sp.mean(0))
    assert fbp.noise_removed == pytest.approx(0.0, abs=1e-6) and fbp.contrast_kept == pytest.approx(1.0)
    lost = quality_figures(sp, np.full_like(clean, float(clean.mean())))
    assert lost.contrast_kept < 0.1 and lost.edge_gradient_kept < 0.1
    blurred = quality_figures(sp, gaussian_slices(sp.mean(0), 5.0))
    assert blurred.edge_gradient_kept < 0.7
    v = quality_verdict(None, lost.as_dict())
    assert v["status"] == "below_baseline" and any("contrast" in r for r in v["reasons"])
    unchecked = quality_verdict(None, good.as_dict(), missing="no held-out slices")
    assert unchecked["status"] == "unchecked" and "no held-out slices" in unchecked["notes"][0]
    from tomodenoise.quality.report import headline

    assert headline({**unchecked, "heldout": None}).startswith("quality UNCHECKED")


def test_gaussian_sigma_tuned_on_the_n2i_loss_is_the_one_closest_to_the_truth():
    clean, sp = _discs(sigma=0.6)
    k = sp.shape[0]
    inputs = [(sp.sum(0) - sp[j]) / (k - 1) for j in range(k)]
    sigma, loss, tried = tune_gaussian(inputs, list(sp))
    true_err = {s: float(np.mean((gaussian_slices(inputs[0], s) - clean) ** 2)) for s, _ in tried}
    best_true = min(true_err, key=true_err.get)
    assert true_err[sigma] <= 1.05 * true_err[best_true]
    assert loss < dict(tried)[min(s for s, _ in tried)]


def _checkpoint(tmp_path, sp, minutes=None, epochs=1, seed=0, lr=3e-3, depth=8):
    cfg = TrainConfig(epochs=epochs, progress=False, val_slices=[2, 3], neighbours=0, patch_size=None,
                      patches_per_slice=1, batch_size=4, lr=lr, early_stopping=0, max_minutes=minutes, seed=seed)
    res = train_n2i(sp, cfg, ModelConfig(name="msd", params={"depth": depth}), tmp_path)
    return res


def test_an_untrained_network_is_flagged(tmp_path):
    clean, sp = _discs()
    res = _checkpoint(tmp_path, sp)
    model, meta = load_checkpoint(res.checkpoint)
    torch.manual_seed(1)
    model.load_state_dict(build_model("msd", depth=8).state_dict())  # untrained weights, same network
    h = heldout_losses(model, meta, sp, meta["val_slices"])
    assert h["slices"] == [2, 3]
    assert h["gaussian"] < h["input"]  # the tuned Gaussian beats doing nothing
    assert not h["beats_gaussian"] and h["network"] > h["gaussian"]
    den = np.stack([sp.mean(0)[z] * 0 + float(sp.mean()) for z in range(sp.shape[1])])
    v = quality_verdict(h, quality_figures(sp, den).as_dict())
    assert v["status"] == "below_baseline" and v["remedy"]
    assert "does not beat the tuned Gaussian" in v["reasons"][0]
    msg = below_baseline_message({**v, "heldout": h})
    assert msg.startswith("QUALITY BELOW BASELINE") and "train.max_minutes" in msg


def test_a_trained_network_on_foam_passes(tmp_path):
    from tomodenoise.denoise import denoise_checkpoint
    from tomodenoise.methods.sample import foam_scan

    scan = foam_scan(3, n_slices=6, n_det=48, n_angles=192, i0=300.0, n_spheres=100)
    sp = scan.split_fbps(4).astype(np.float32)
    res = _checkpoint(tmp_path, sp, epochs=150, lr=1e-2, depth=10)  # 600 steps, ~15 s
    model, meta = load_checkpoint(res.checkpoint)
    h = heldout_losses(model, meta, sp, meta["val_slices"])
    den = np.asarray(denoise_checkpoint(res.checkpoint, sp, progress=False))
    fig = quality_figures(sp, den).as_dict()
    v = quality_verdict(h, fig)
    assert h["beats_gaussian"] and h["gain_over_gaussian_db"] > 0.5, h
    assert v["status"] == "ok", (v, fig)
    # and the held-out loss ranks like the truth: the network is closer to the clean image than the Gaussian
    from tomodenoise.quality import gaussian_slices

    err_net = np.mean((den[2:4] - scan.clean[2:4]) ** 2)
    err_gauss = np.mean((gaussian_slices(sp.mean(0)[2:4], h["gaussian_sigma"]) - scan.clean[2:4]) ** 2)
    assert err_net < err_gauss
    md = "\n".join(quality_markdown({**v, "heldout": h, "figures": fig}))
    assert "quality OK" in md and "best Gaussian" in md


def test_the_ui_report_and_console_table_carry_the_verdict(tmp_path):
    import json

    from tomodenoise.report import report_markdown
    from tomodenoise.summary import metrics_table

    h = {"network": 3e-6, "input": 3.3e-6, "gaussian": 2.5e-6, "gaussian_sigma": 3.3, "gain_over_gaussian_db": None,
         "beats_gaussian": False}
    fig = {"contrast_kept": 0.99, "edge_gradient_kept": 0.51, "noise_removed": 0.66}
    q = {**quality_verdict(h, fig), "heldout": h, "figures": fig}
    metrics = {"fbp": {"noise_std_estimate": 1e-3}, "denoised": {}, "quality": q}
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "metrics.json").write_text(json.dumps(metrics))
    md = report_markdown(tmp_path)  # report.md; the UI's artifact is the same page with the pictures embedded
    assert "**quality: below_baseline**" in md.splitlines()[2]  # first thing under the title
    assert "QUALITY BELOW BASELINE" in md and "edge gradient kept 0.51 < 0.7" in md and "Remedy:" in md
    table = metrics_table(metrics)
    assert "QUALITY BELOW BASELINE" in table and "| edge gradient kept (>= 0.7) | 0.51 |" in table


def test_console_report_md_and_ui_show_the_same_figures_per_time_step_and_channel(tmp_path):
    import json

    from PIL import Image

    from tomodenoise.report import MAX_EMBED_BYTES, metrics_lines, report_markdown
    from tomodenoise.summary import metrics_table

    metrics = {"fbp": {"psnr": 20.0, "ssim": 0.5, "psnr_mean_over_channels": 19.0, "noise_std_estimate": 0.01},
               "denoised": {"psnr": 25.0, "ssim": 0.8, "psnr_mean_over_channels": 24.5, "best_val_loss": 0.02},
               "per_time": [{"time": 0.5, "fbp_psnr": 20.1, "denoised_psnr": 24.0},
                            {"time": 1.5, "fbp_psnr": 19.9, "denoised_psnr": 26.0}],
               "per_channel": [{"channel": 3.25, "fbp_psnr": 18.0, "denoised_psnr": 23.5}],
               "stages": {"ingest": 1.0, "train": 2.5}, "quality": {"status": "ok", "heldout": None}}
    report = tmp_path / "scan" / "report"
    report.mkdir(parents=True)
    (report / "metrics.json").write_text(json.dumps(metrics))
    for name in ("preview_z0000.png", "time_strip.png"):
        Image.new("RGB", (40, 20)).save(report / name)
    lines = metrics_lines(metrics)
    assert lines[0] == "**quality: ok**"  # the verdict first
    for row in ("| 0.5 | 20.10 | 24.00 |", "| 1.5 | 19.90 | 26.00 |", "| 3.25 | 18.00 | 23.50 |",
                "| PSNR gain per time step (2) | | +3.90 to +6.10 dB |", "| SSIM | 0.500 | 0.800 |",
                "| PSNR, mean over channels | 19.00 | 24.50 |", "| **total** | **3.5** |"):
        assert row in lines, row
    md, ui = report_markdown(report.parent), report_markdown(report.parent, embed_bytes=MAX_EMBED_BYTES)
    assert metrics_table(metrics) == "\n".join(lines)
    for page in (md, ui):
        assert page.splitlines()[2:2 + len(lines)] == lines
    assert "![preview_z0000](preview_z0000.png)" in md and "![time_strip](time_strip.png)" in md
    assert ui.count("](data:image/png;base64,") == 2 and "Output store:" in ui and "Output store:" not in md
