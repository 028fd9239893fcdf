"""What the modality benchmarks (:mod:`benchmarks.dynamic`, :mod:`benchmarks.xrdct`) share: the
run's configuration, a run of the real pipeline (:func:`tomodenoise.pipeline.run`, no Prefect)
scored against the simulated truth, its images, and the written result.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from tomodenoise.config import RunConfig

__all__ = ["fbp_and_denoised", "run_config", "run_pipeline", "write_result"]


def run_config(scan: Path, out: Path, scan_id: str, minutes: float, **sections: Any) -> RunConfig:
    """The benchmarks' run: K = 4, MS-D 30 x 1, ``minutes`` of training, threads; ``sections`` update it."""
    base = {
        "input": {"path": str(scan), "scan_id": scan_id},
        "splits": {"k": 4},
        "model": {"name": "msd", "params": {"depth": 30, "width": 1}},
        "train": {"epochs": 1000, "batch_size": 8, "patch_size": 64, "patches_per_slice": 2, "lr": 2e-3, "neighbours": 0,
                  "early_stopping": 0, "max_minutes": minutes, "progress": False},
        "compute": {"cluster": "threads"},
        "output": {"root": str(out), "previews": 0},
    }
    for k, v in sections.items():
        base[k] = {**base.get(k, {}), **v}
    return RunConfig.model_validate(base)


def run_pipeline(cfg: RunConfig, reference: np.ndarray) -> tuple[dict[str, Any], Any, float]:
    """:func:`tomodenoise.pipeline.run` scored against ``reference``: its metrics, its store, its seconds."""
    from tomodenoise import pipeline

    t0 = time.perf_counter()
    store = pipeline.run(cfg, reference=reference, progress=False)
    metrics = json.loads((store.report_dir / "metrics.json").read_text())
    return metrics, store, time.perf_counter() - t0


def fbp_and_denoised(store: Any) -> tuple[np.ndarray, np.ndarray]:
    """FBP (mean of the splits) and denoised, both ``(time, channel, z, y, x)``."""
    rec = np.asarray(store.array("recon")[:], dtype=np.float32)
    return rec.mean(axis=0), np.asarray(store.array("denoised")[:], dtype=np.float32)


def write_result(out: Path, name: str, result: dict[str, Any], md: list[str]) -> None:
    """``out/<name>.json`` and ``out/<name>.md``; print the Markdown."""
    (out / f"{name}.json").write_text(json.dumps(result, indent=2))
    (out / f"{name}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
