"""How many training steps ``run``'s recipe needs on a real scan: the calibration of
``tomodenoise.train.recipe.STEPS_NEEDED``.

For each step count N, the default recipe is trained for exactly N steps (its schedule ends at
N, as it would when a budget allows N steps; no time limit, so the figures do not depend on
the machine's load), every slice is denoised with ``best.pt`` and the quality check's
figures are computed (contrast kept, edge gradient kept, noise removed, held-out N2I loss of
the network against the tuned Gaussian). Reconstruction comes from a store that
``tomodenoise run`` wrote (its ``recon``), so the data are exactly what ``run`` trains on.

    tomodenoise run SCAN --out OUT --no-prefect          # once, for the store
    python benchmarks/real_scans/calibrate_steps.py OUT/<scan_id> --steps 125 250 500 1000 2000
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("store", help="a store written by tomodenoise run (<out>/<scan_id>)")
    p.add_argument("--steps", type=int, nargs="+", default=[125, 250, 500, 1000, 2000])
    p.add_argument("--out", help="JSON with the figures (default <store>/report/calibration.json)")
    a = p.parse_args()
    from tomodenoise.config import RunConfig, TrainConfig
    from tomodenoise.denoise import denoise_checkpoint
    from tomodenoise.io.store import ScanStore
    from tomodenoise.pipeline.training import training_data
    from tomodenoise.quality import heldout_losses, quality_figures, quality_verdict
    from tomodenoise.train import load_checkpoint, split_items, train_n2i
    from tomodenoise.train.recipe import resolve_recipe

    store = ScanStore(Path(a.store))
    cfg = RunConfig.model_validate(store.attrs["config"]) if "config" in store.attrs else RunConfig()
    splits, shape, norm = training_data(store, cfg)
    k, nz = splits.shape[:2]
    train_idx, _ = split_items(shape, cfg.train.val_fraction, cfg.train.val_slices)
    rows = []
    for n in a.steps:
        base = TrainConfig(progress=False, early_stopping=0, max_minutes=1e4)
        rec = resolve_recipe(base, cfg.model, image_shape=tuple(splits.shape[2:]), volume_shape=shape,
                             n_train=len(train_idx), k=k)
        per_epoch = math.ceil(len(train_idx) * k * (rec.train.patches_per_slice if rec.train.patch_size else 1)
                              / rec.train.batch_size)
        epochs = max(1, round(n / per_epoch))
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            res = train_n2i(splits, base.model_copy(update={"epochs": epochs}), cfg.model, d, volume_shape=shape,
                            normalisation=norm)
            seconds = time.perf_counter() - t0
            model, meta = load_checkpoint(res.checkpoint)
            h = heldout_losses(model, meta, splits, meta["val_slices"], volume_shape=shape)
            den = np.asarray(denoise_checkpoint(res.checkpoint, splits, progress=False), dtype=np.float32)
        fig = quality_figures(splits[:, :shape[2]], den[:shape[2]]).as_dict()
        v = quality_verdict(h, fig)
        row = {"steps": int(res.history[-1]["step"]), "epochs": epochs, "train_seconds": round(seconds, 1),
               "contrast_kept": fig["contrast_kept"], "edge_gradient_kept": fig["edge_gradient_kept"],
               "noise_removed": fig["noise_removed"], "loss_network": h["network"], "loss_gaussian": h["gaussian"],
               "gain_over_gaussian_db": h["gain_over_gaussian_db"], "status": v["status"]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    out = Path(a.out) if a.out else store.report_dir / "calibration.json"
    out.write_text(json.dumps({"store": str(store.root), "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
