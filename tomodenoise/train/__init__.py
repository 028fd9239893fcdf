"""Noise2Inverse training (Hendriksen, Pelt & Batenburg, IEEE TCI 2020).

The K split reconstructions ``(split, z, y, x)`` show the same object with independent
noise. For every slice and every split ``j``:

- strategy ``"X:1"``: input = mean of the other K-1 splits, target = split ``j``;
- strategy ``"1:X"``: input = split ``j``, target = mean of the other K-1 splits.

Rotating ``j`` over all K splits gives ``K x slices`` training pairs. The sum of the K splits
is kept in memory, so a leave-one-out mean is ``(sum - split_j) / (K - 1)``.

Validation holds out whole z slices (never trained on) and uses the same N2I loss (MSE
between the network output and the noisy target over all K rotations). The checkpoint kept
as ``best.pt`` is the epoch with the lowest validation loss; ``last.pt`` is the latest epoch.

Checkpoints are plain dicts of tensors and primitive containers, readable with
``torch.load(path, weights_only=True)``, written to a temporary name and renamed.

Distributed training: when ``torch.distributed`` is initialised (e.g. under ``torchrun``)
each rank trains on its shard of every epoch's shuffled items, the model is wrapped in
``DistributedDataParallel``, losses are all-reduced and only rank 0 writes checkpoints.
``batch_size`` is then per rank (the effective batch is ``world_size * batch_size``) and batch
normalisation statistics are per rank. The train stage's ranks run
``python -m tomodenoise.pipeline.ddp`` (started by the stage, or by ``srun torchrun`` in
``deploy/slurm/train.sbatch``); ``python -m tomodenoise.train`` (also under ``torchrun``)
trains on a ``.npy`` of split reconstructions without a store.
"""

from tomodenoise.device import resolve_device
from tomodenoise.train.checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    checkpoint_neighbour_axis,
    checkpoint_neighbours,
    load_checkpoint,
)
from tomodenoise.train.data import (
    STRATEGIES,
    N2IPairs,
    compute_normalisation,
    denormalise,
    normalise,
    split_items,
    split_slices,
)
from tomodenoise.train.loop import TrainResult, train_n2i
from tomodenoise.train.validation import n2i_validation_loss

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "N2IPairs",
    "STRATEGIES",
    "TrainResult",
    "checkpoint_neighbour_axis",
    "checkpoint_neighbours",
    "compute_normalisation",
    "load_checkpoint",
    "n2i_validation_loss",
    "normalise",
    "denormalise",
    "resolve_device",
    "split_items",
    "split_slices",
    "train_n2i",
]
