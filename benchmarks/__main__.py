"""``python -m benchmarks NAME [options]``: the one way to run each benchmark (from the repository root).

``python -m benchmarks --help`` lists the benchmarks; ``python -m benchmarks NAME --help``
gives one's options. Only the chosen benchmark's module is imported, after the process is set
up for it (``recon_scaling`` runs with one OpenMP/BLAS thread, set before NumPy is imported, as
a pipeline worker has).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

__all__ = ["BENCHMARKS", "SINGLE_THREADED", "main"]

#: name -> (module of :mod:`benchmarks`, one line of help)
BENCHMARKS: dict[str, tuple[str, str]] = {
    "foam": ("foam", "quality of every method on the reference foam, PSNR-against-time curves of the N2I networks"),
    "reference": ("reference", "our training loop against a reference-style loop, same network, same foam"),
    "warmstart": ("warmstart", "warm start from another foam's model against a cold start"),
    "profile": ("step_profile", "where one training step's time goes"),
    "compare": ("compare", "every method of `tomodenoise compare` on a reduced foam, and the issue's checks"),
    "dynamic": ("dynamic", "PSNR per time step of FBP, N2I and N2I with time neighbours (dynamic 4D)"),
    "xrdct": ("xrdct", "PSNR per channel; N2I at reduced counts against the FBP at full counts (XRD-CT)"),
    "real": ("real", "run's defaults on real scans: the quality figures without ground truth"),
    "inference": ("inference", "sharded inference on 1 and 2 Dask workers; slices/s of one process"),
    "ddp": ("ddp", "DDP training throughput: 1 process against n ranks"),
    "idle_cluster": ("idle_cluster", "training beside the run's idle Dask cluster against none, and the "
                     "cluster's start and close: keep it or close it while the network trains"),
    "dask_inference_ratio": ("dask_inference_ratio", "the denoise stage on one Dask worker against one process, "
                             "as a ratio (target <= 1.2x)"),
    "recon_scaling": ("recon_scaling", "raw ASTRA in one process against the Prefect/Dask reconstruct flow"),
    "preview_centre": ("preview_centre", "`tomodenoise preview` on a simulated scan of a big detector"),
    "gaintuning_dose": ("gaintuning_dose", "GainTuning at three doses, against the N2I-loss ceiling"),
}

#: Benchmarks run with one OpenMP/BLAS thread (like a Dask worker of the pipeline).
SINGLE_THREADED = frozenset({"recon_scaling"})


def _top_parser() -> argparse.ArgumentParser:
    width = max(map(len, BENCHMARKS))
    listing = "\n".join(f"  {name:{width}}  {text}" for name, (_, text) in BENCHMARKS.items())
    p = argparse.ArgumentParser(prog="python -m benchmarks", formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Run one benchmark of tomodenoise (from the repository root).",
                                epilog=f"benchmarks:\n{listing}\n\n`python -m benchmarks NAME --help`: its options.")
    p.add_argument("name", choices=list(BENCHMARKS), metavar="NAME", help="the benchmark (listed below)")
    p.add_argument("options", nargs=argparse.REMAINDER, help="its options")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``NAME [options]``, import that benchmark's module and run its ``main(args)``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser().parse_args(argv)
    module_name = BENCHMARKS[top.name][0]
    if top.name in SINGLE_THREADED:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = "1"
    module = importlib.import_module(f"{__package__ or 'benchmarks'}.{module_name}")
    p = argparse.ArgumentParser(prog=f"python -m benchmarks {top.name}", description=module.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    module.add_arguments(p)
    args = p.parse_args(top.options)
    args.argv = top.options  # the benchmark's own options, for the command line it records
    return int(module.main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
