"""tomodenoise on a SLURM cluster: the job scripts and submitting them (no Prefect here).

- ``train.sbatch``, ``pipeline.sbatch`` (this folder: package data, so an installed
  tomodenoise finds them; ``deploy/slurm/`` links to them): the train stage under
  ``srun torchrun``, and a scan's whole pipeline inside one allocation.
- :mod:`.jobs`: what SLURM says of a job script (``sbatch --test-only``) or of jobs (``squeue``,
  ``scontrol``), the pending reasons that cannot clear, one-sentence errors with the remedy.
- :mod:`.watch`: the watch over a run's Dask worker jobs (``compute.cluster: slurm``): a job
  pending for ever fails the run, a lost one is replaced with a warning.
- :mod:`.submit` (and its command line, :mod:`.command`): ``tomodenoise slurm train|pipeline|watch``: read the partition's nodes
  (``sinfo``), size the request from the run configuration, ask ``sbatch --test-only`` first,
  submit, and watch the job until it runs (a job that can never start fails in one line).
- :mod:`.allocation`: what ``pipeline.sbatch`` runs in its batch step: the ingest and
  reconstruct stages on the allocation's Dask workers (``python -m tomodenoise.hpc.allocation``).
"""

from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
"""Where the job scripts are (``SCRIPTS / "train.sbatch"``, ``SCRIPTS / "pipeline.sbatch"``)."""

__all__ = ["SCRIPTS"]
