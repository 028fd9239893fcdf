"""Which Dask cluster runs the chunked work, from ``compute`` in the run configuration.

The flows turn :func:`dask_runner_kwargs` into a ``prefect_dask.DaskTaskRunner``; this module
only decides (no Prefect here, per the import rules of DESIGN.md):

- ``local``: a ``distributed.LocalCluster`` with ``n_workers`` processes (the default);
- ``local_cuda``: ``dask_cuda.LocalCUDACluster``, one worker per visible GPU; falls back to
  ``local`` (with a warning) when dask-cuda is not importable or there is no GPU;
- ``address``: an existing scheduler (``compute.address``, e.g. ``tcp://head:8786``);
- ``slurm``: ``dask_jobqueue.SLURMCluster(**compute.slurm)`` scaled to ``n_workers`` jobs.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from .config import ComputeConfig

log = logging.getLogger(__name__)
LOG_PRELOAD = "tomodenoise.logs"  # Dask preload module: quiet console, the parent's run log


def gpu_count() -> int:
    """GPUs this process can see (``CUDA_VISIBLE_DEVICES`` honoured), without initialising CUDA."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return 0
    try:
        import pynvml  # ships with dask-cuda's dependencies

        pynvml.nvmlInit()
        n = pynvml.nvmlDeviceGetCount()
        pynvml.nvmlShutdown()
    except Exception:
        try:
            import torch

            n = torch.cuda.device_count()
        except Exception:
            n = 0
    if visible:
        n = min(n, len([v for v in visible.split(",") if v.strip()]))
    return int(n)


def dask_runner_kwargs(compute: ComputeConfig) -> dict[str, Any]:
    """Keyword arguments of ``prefect_dask.DaskTaskRunner`` for this configuration."""
    kind = compute.cluster
    if kind == "address":
        if not compute.address:
            raise ValueError("compute.cluster = 'address' needs compute.address (e.g. tcp://scheduler:8786)")
        return {"address": compute.address}
    if kind == "slurm":
        try:
            import dask_jobqueue  # noqa: F401
        except ImportError as e:  # pragma: no cover - a core dependency
            raise ValueError("compute.cluster = 'slurm' needs dask-jobqueue") from e
        return {
            "cluster_class": "dask_jobqueue.SLURMCluster",
            "cluster_kwargs": dict(compute.slurm),
            "adapt_kwargs": {"minimum": compute.n_workers, "maximum": compute.n_workers},
        }
    if kind == "local_cuda":
        n_gpu = gpu_count()
        try:
            import dask_cuda  # noqa: F401

            have_dask_cuda = True
        except Exception:  # ImportError, or its CUDA extra missing
            have_dask_cuda = False
        if n_gpu > 0 and have_dask_cuda:
            return {
                "cluster_class": "dask_cuda.LocalCUDACluster",
                "cluster_kwargs": {"threads_per_worker": compute.threads_per_worker, "preload": [LOG_PRELOAD]},
            }
        why = "no GPU is visible" if n_gpu == 0 else "dask-cuda is not installed (pip install 'dask-cuda[cu12]')"
        log.warning("compute.cluster = 'local_cuda' but %s: using a CPU LocalCluster", why)
    return {
        "cluster_class": "distributed.LocalCluster",
        "cluster_kwargs": {
            "n_workers": compute.n_workers,
            "threads_per_worker": compute.threads_per_worker,
            "processes": True,
            "preload": [LOG_PRELOAD],  # each worker logs like its parent (tomodenoise.logs.dask_setup)
            # Each worker runs ASTRA/NumPy single-threaded unless told otherwise, so that
            # n workers use n cores instead of fighting over them.
            "env": {"OMP_NUM_THREADS": str(compute.threads_per_worker),
                    "OPENBLAS_NUM_THREADS": str(compute.threads_per_worker),
                    "MKL_NUM_THREADS": str(compute.threads_per_worker)},
        },
    }
