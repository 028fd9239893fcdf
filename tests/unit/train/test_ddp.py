"""DDP training on CPU with gloo ranks started by torch's launcher (tomodenoise.train.launch).

- 2 ranks with batch b follow the loss curve of 1 process with batch 2b (same seed);
- a killed rank fails the launch at once with a message naming it (no hang);
- the train stage with ``train.ranks: 2`` trains from the store, rank 0 writes the checkpoints,
  and a rerun after a crash resumes from ``last.pt``.
"""

import os
import signal
import threading
import time

import numpy as np
import pytest
import torch

from tomodenoise import pipeline
from tomodenoise.pipeline import training
from tomodenoise.config import ModelConfig, RunConfig
from tomodenoise.simulate.scan import simulate_foam_scan
from tomodenoise.train import load_checkpoint, train_n2i
from tomodenoise.train.checkpoint import load_raw
from tomodenoise.train.launch import RankFailure, launch_ranks, read_rank_progress, resolve_ranks


def _data(tmp_path, k=4, z=8, n=24, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:n, :n]
    clean = np.stack([np.sin(xx / (3 + i)) * np.cos(yy / 4) for i in range(z)]).astype(np.float32)
    splits = clean[None] + 0.3 * rng.standard_normal((k, z, n, n)).astype(np.float32)
    path = tmp_path / "splits.npy"
    np.save(path, splits)
    return splits, path


def _cfg(batch, epochs=3, **train):
    cfg = RunConfig()
    cfg.model = ModelConfig(name="msd", params={"depth": 4, "width": 1})  # no batch norm: ranks can agree
    cfg.train.epochs = epochs
    cfg.train.batch_size = batch
    cfg.train.patch_size = 16
    cfg.train.patches_per_slice = 1  # a few steps an epoch (not the recipe's ~100)
    cfg.train.val_slices = [7]
    cfg.train.device = "cpu"
    cfg.train.progress = False
    cfg.train.early_stopping = 0
    cfg.train.max_minutes = 30
    cfg.train.rank_timeout = 60
    for key, value in train.items():
        setattr(cfg.train, key, value)
    return cfg


def test_resolve_ranks_without_gpus():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert resolve_ranks(1) == (1, "gloo")
    assert resolve_ranks(2, "cpu") == (2, "gloo")
    assert resolve_ranks("auto") == (1, "gloo")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        resolve_ranks(2, "cuda")


def test_two_gloo_ranks_with_batch_b_match_one_process_with_batch_2b(tmp_path):
    splits, path = _data(tmp_path)
    one = _cfg(batch=4)
    ref = train_n2i(splits, one.train, one.model, tmp_path / "one")
    two = _cfg(batch=2)
    two.save(tmp_path / "two.yaml")
    launch_ranks(["-m", "tomodenoise.train", "--recon", str(path), "--config", str(tmp_path / "two.yaml"),
                  "--out", str(tmp_path / "two")], 2, log_dir=tmp_path / "logs")
    hist = load_raw(tmp_path / "two" / "last.pt")["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    a = np.array([[h["train_loss"], h["val_loss"]] for h in ref.history])
    b = np.array([[h["train_loss"], h["val_loss"]] for h in hist])
    np.testing.assert_allclose(b, a, rtol=1e-4)
    assert [h["step"] for h in hist] == [h["step"] for h in ref.history]  # same steps per epoch
    # and a different batch is a different curve: the comparison above can fail
    other = _cfg(batch=2)
    diff = train_n2i(splits, other.train, other.model, tmp_path / "other")
    assert abs(diff.history[-1]["train_loss"] - ref.history[-1]["train_loss"]) > 1e-3 * ref.history[-1]["train_loss"]
    m1, _ = load_checkpoint(tmp_path / "one" / "last.pt")
    m2, _ = load_checkpoint(tmp_path / "two" / "last.pt")
    for p1, p2 in zip(m1.parameters(), m2.parameters()):
        torch.testing.assert_close(p2, p1, rtol=1e-3, atol=1e-5)


def test_a_killed_rank_fails_the_launch_clearly_and_quickly(tmp_path):
    _, path = _data(tmp_path, z=8, n=32)
    cfg = _cfg(batch=1, epochs=500)  # far longer than the test waits
    cfg.save(tmp_path / "run.yaml")
    failure: dict = {}

    def run():
        try:
            launch_ranks(["-m", "tomodenoise.train", "--recon", str(path), "--config", str(tmp_path / "run.yaml"),
                          "--out", str(tmp_path / "out")], 2, log_dir=tmp_path / "logs")
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            failure["exc"] = exc

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (tmp_path / "out" / "last.pt").exists():
        time.sleep(0.5)
    assert (tmp_path / "out" / "last.pt").exists(), "training never finished an epoch"
    pids = _rank_pids(str(path))
    assert len(pids) == 2, pids
    os.kill(pids[1], signal.SIGKILL)
    killed = time.monotonic()
    t.join(timeout=120)
    assert not t.is_alive(), "the launch hangs after a rank died"
    assert time.monotonic() - killed < 90
    exc = failure.get("exc")
    assert isinstance(exc, RankFailure), repr(exc)
    assert "training rank 1 of 2 failed (killed by SIGKILL)" in str(exc)
    assert _rank_pids(str(path)) == []  # the other rank was stopped too


def _rank_pids(marker: str) -> list[int]:
    """Pids of the rank processes (their command line names the .npy), ordered by RANK."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            cmd = open(f"/proc/{d}/cmdline", "rb").read().split(b"\0")
            env = open(f"/proc/{d}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        if marker.encode() in cmd and b"tomodenoise.train" in cmd:
            rank = [e for e in env if e.startswith(b"RANK=")]
            if rank:
                out.append((int(rank[0][5:]), int(d)))
    return [pid for _, pid in sorted(out)]


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    d = tmp_path_factory.mktemp("ddp-scan")
    scan = simulate_foam_scan(d / "foam.h5", size=24, n_angles=32, n_slices=4, i0=200.0, seed=3, n_spheres=40)
    cfg = RunConfig()
    cfg.input.path = str(scan["scan"])
    cfg.output.root = str(d / "out")
    cfg.recon.z_chunk = 2
    cfg.model = ModelConfig(name="msd", params={"depth": 3, "width": 1})
    cfg.train.epochs = 2
    cfg.train.patch_size = 16
    cfg.train.patches_per_slice = 1  # a few steps an epoch (not the recipe's ~100)
    cfg.train.progress = False
    cfg.train.device = "cpu"
    cfg.output.previews = 0
    store = pipeline.ingest(cfg)
    pipeline.reconstruct(store, cfg, progress=False)
    return store, cfg


def test_the_train_stage_runs_two_ranks_from_the_store(tiny_store):
    store, cfg = tiny_store
    cfg = cfg.model_copy(deep=True)
    cfg.train.ranks = 2
    seen = []
    ckpt = pipeline.train(store, cfg, on_epoch=lambda e, n, entry: seen.append((e, n, entry.get("ranks"))))
    info = store.stage_info("train")
    assert info["ranks"] == 2 and info["epochs"] == 2 and ckpt.exists()
    assert seen and seen[-1][0] == 2 and seen[-1][2] == 2
    progress = read_rank_progress(training.progress_dir(store))
    assert sorted(progress) == [0, 1] and all(p["status"] == "done" for p in progress.values())
    files = sorted(p.name for p in store.model_dir.iterdir())
    assert "best.pt" in files and "last.pt" in files and not [f for f in files if f.endswith(".tmp")]
    # a second run with the same settings is skipped
    last = store.model_dir / "last.pt"
    stamp = last.stat().st_mtime_ns
    assert pipeline.train(store, cfg) == ckpt and last.stat().st_mtime_ns == stamp
    # a crash before the stage was marked: the ranks resume from last.pt (nothing left to train,
    # so last.pt is not rewritten; a fresh start would have rewritten it)
    store.clear_stage("train")
    pipeline.train(store, cfg)
    assert last.stat().st_mtime_ns == stamp and store.stage_info("train")["epochs"] == 2


def test_ranks_started_by_hand_do_the_stage_bookkeeping(tiny_store, tmp_path):
    """What deploy/slurm/train.sbatch runs (srun torchrun -m tomodenoise.pipeline.ddp --stage)."""
    store, cfg = tiny_store
    cfg = cfg.model_copy(deep=True)
    cfg.train.epochs = 1
    cfg.train.seed = 5  # another key than the other test's
    cfg.save(tmp_path / "run.yaml")
    launch_ranks(["-m", "tomodenoise.pipeline.ddp", "--store", str(store.root), "--config", str(tmp_path / "run.yaml"),
                  "--stage"], 2, log_dir=tmp_path / "logs")
    info = store.stage_info("train")
    assert info["ranks"] == 2 and info["epochs"] == 1
    assert pipeline.stage_current(store, "train", pipeline.key_for(store, cfg, "train"))
    # the pipeline now skips the stage: the model is current
    stamp = (store.model_dir / "best.pt").stat().st_mtime_ns
    pipeline.train(store, cfg)
    assert (store.model_dir / "best.pt").stat().st_mtime_ns == stamp


def test_the_slurm_job_script_runs_torchrun_ranks(tiny_store, tmp_path):
    """deploy/slurm/train.sbatch with stand-ins for srun and scontrol: the real torchrun, 2 gloo ranks."""
    import subprocess
    import sys
    from pathlib import Path

    store, cfg = tiny_store
    cfg = cfg.model_copy(deep=True)
    cfg.train.epochs = 1
    cfg.train.seed = 7
    cfg.save(tmp_path / "run.yaml")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text('#!/bin/bash\nwhile [[ "$1" == --* ]]; do shift; done\nexec "$@"\n')
    (fake / "scontrol").write_text("#!/bin/bash\necho localhost\n")
    for f in fake.iterdir():
        f.chmod(0o755)
    venv = Path(sys.executable).parent.parent
    env = dict(os.environ, PATH=f"{fake}:{os.environ['PATH']}", TOMODENOISE_ENV=str(venv), SLURM_JOB_NODELIST="n1",
               SLURM_NNODES="1", SLURM_GPUS_PER_NODE="gpu:2", SLURM_JOB_ID="4242", OMP_NUM_THREADS="1")
    script = Path(__file__).parents[3] / "deploy" / "slurm" / "train.sbatch"
    r = subprocess.run(["bash", str(script), str(store.root), str(tmp_path / "run.yaml")], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert store.stage_info("train")["ranks"] == 2
    assert pipeline.stage_current(store, "train", pipeline.key_for(store, cfg, "train"))

