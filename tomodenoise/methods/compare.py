"""Run several methods on one scan and judge them alike.

Every method runs twice:

1. on the whole scan: the volume that is shown, scored by PSNR/SSIM against ``scan.clean``
   when there is one (over every slice except the one the methods tune on);
2. on the projections of three of six interlaced angle groups: its output ``f`` is scored by
   uPSNR against the FBPs ``a, b, c`` of the other three groups (:func:`symmetric_upsnr`,
   :func:`tomodenoise.metrics.upsnr` averaged over the roles), which needs no ground truth. With a clean reference
   the same output's true PSNR is kept too, and the rank correlation of uPSNR with the true
   PSNR across methods (and their snapshots, e.g. training checkpoints) tells whether uPSNR
   can be trusted to rank methods on real scans.

:func:`compare` returns the rows and writes ``compare.json``, ``compare.md`` and
``panel.png`` (:mod:`.report`) to ``out``.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import metrics
from ..splits import split_indices
from .base import Context, MethodConfig, Scan
from .registry import parse_methods
from .tuning import fov_mask

__all__ = ["Row", "compare", "rank_check", "symmetric_upsnr", "upsnr_split", "UPSNR_GROUPS"]

#: interlaced angle groups of the uPSNR protocol: the method sees 3, three are held out
UPSNR_GROUPS = 6


@dataclass
class Row:
    """One method's line of the comparison."""

    label: str
    method: str
    status: str = "ok"  #: ok, skipped (needs what the scan lacks) or failed
    reason: str = ""
    psnr: float | None = None
    ssim: float | None = None
    upsnr: float | None = None
    psnr_eval: float | None = None  #: true PSNR of the uPSNR run's output (the rank check)
    seconds: float | None = None
    train_seconds: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    #: per snapshot: label, psnr (full run), train_seconds (when the method gives
    #: ``info["snapshot_seconds"]``), upsnr and psnr_eval (uPSNR run)
    snapshots: list[dict[str, Any]] = field(default_factory=list)


def upsnr_split(scan: Scan, groups: int = UPSNR_GROUPS) -> tuple[Scan, list[np.ndarray]]:
    """The scan of groups ``0..groups-4`` (what the method sees) and the held-out groups' FBPs."""
    if groups < 4:
        raise ValueError(f"the uPSNR protocol needs at least 4 angle groups, got {groups}")
    idx = split_indices(scan.angles.size, groups)
    seen = np.concatenate(idx[: groups - 3])
    return scan.subset(seen), [scan.fbp(i) for i in idx[groups - 3:]]


def symmetric_upsnr(f: np.ndarray, held: list[np.ndarray], data_range: float) -> float:
    """uPSNR of ``f`` against three held-out FBPs, with uMSE averaged over the three ways of
    picking the one compared with ``f`` (:func:`tomodenoise.metrics.umse`).

    Each term is unbiased; the average compares ``f`` with all three held-out FBPs and
    estimates the noise from all three pairs, which lowers the variance of the estimate (on
    small scans it is what limits uPSNR: the noise term is as large as the data term, and a
    good method's uMSE is their small difference). ``nan`` when the estimate is not positive.
    """
    a, b, c = held
    u = float(np.mean([metrics.umse(f, a, b, c), metrics.umse(f, b, c, a), metrics.umse(f, c, a, b)]))
    return 10.0 * math.log10(data_range ** 2 / u) if u > 0 else float("nan")


def _finite(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def rank_check(rows: list[Row]) -> dict[str, Any] | None:
    """Spearman correlation of uPSNR with the true PSNR over methods and snapshots."""
    pts = [(r.upsnr, r.psnr_eval) for r in rows if r.status == "ok"]
    pts += [(s.get("upsnr"), s.get("psnr_eval")) for r in rows for s in r.snapshots]
    pts = [(u, p) for u, p in pts if u is not None and p is not None]
    if len(pts) < 3:
        return None
    from scipy.stats import spearmanr

    rho, pval = spearmanr([u for u, _ in pts], [p for _, p in pts])
    return {"spearman": float(rho), "p_value": float(pval), "points": len(pts)}


class _Scorer:
    """PSNR/SSIM/uPSNR over the reported slices, inside the field of view, with one data
    range for every method.

    PSNR and uPSNR use the pixels of the reconstruction disk (:func:`.tuning.fov_mask`):
    outside it no projection constrains the object, and methods differ there only by how
    they extrapolate (FBP's own values are in the simulated reference's corners). SSIM
    needs whole images, so it uses the largest square inside the disk.
    """

    def __init__(self, scan: Scan, keep: np.ndarray, held: list[np.ndarray]) -> None:
        self.scan, self.keep = scan, keep
        n = scan.shape[-1]
        self.mask = fov_mask(n) if scan.shape[-2] == n else np.ones(scan.shape[-2:], bool)
        half = max(int(n / (2 * math.sqrt(2))) - 1, 3)
        mid_y, mid_x = scan.shape[-2] // 2, n // 2
        self.square = (slice(max(mid_y - half, 0), mid_y + half), slice(max(mid_x - half, 0), mid_x + half))
        self.held = [self._disk(h) for h in held]
        self.clean = None if scan.clean is None else self._disk(scan.clean)  #: the reference's disk pixels
        vals = self.clean if self.clean is not None else self._disk(scan.fbp())
        lo, hi = np.percentile(vals, [0.1, 99.9]) if scan.clean is None else (vals.min(), vals.max())
        self.data_range = float(hi - lo) or 1.0

    def _disk(self, vol: np.ndarray) -> np.ndarray:
        """``(slices, pixels)``: the reported slices' pixels inside the field of view."""
        return vol[self.keep][:, self.mask]

    def full(self, vol: np.ndarray) -> tuple[float | None, float | None]:
        if self.scan.clean is None:
            return None, None
        ref, sq = self.scan.clean[self.keep], (slice(None), *self.square)
        return (_finite(metrics.psnr(self.clean, self._disk(vol), data_range=self.data_range)),
                _finite(metrics.ssim(ref[sq], vol[self.keep][sq], data_range=self.data_range)))

    def unsupervised(self, vol: np.ndarray) -> tuple[float | None, float | None]:
        f = self._disk(vol)
        u = _finite(symmetric_upsnr(f, self.held, self.data_range))
        p = None if self.clean is None else _finite(metrics.psnr(self.clean, f, data_range=self.data_range))
        return u, p


def _missing(m: MethodConfig, scan: Scan) -> str:
    lacks = {"clean": scan.clean is None, "second": scan.second is None}
    what = {"clean": "a clean reference (--reference)", "second": "a repeat scan of the object (--second)"}
    return ", ".join(what[n] for n in m.required() if lacks.get(n))


def _check_volume(vol: Any, shape: tuple[int, int, int], label: str) -> np.ndarray:
    v = np.asarray(vol, dtype=np.float32)
    if v.shape != shape:
        raise ValueError(f"{label} returned a volume of shape {v.shape}, expected {shape}")
    return v


@dataclass
class _Setting:
    """What every method of one comparison shares."""

    scan: Scan
    eval_scan: Scan
    scorer: _Scorer
    tune: int
    steps: int
    minutes: float | None
    seed: int
    device: str
    log: Callable[[str], None]
    data_hash: str = ""  #: of the scan's arrays, computed once for every method's resume key

    def __post_init__(self) -> None:
        h = hashlib.sha1()
        second = None if self.scan.second is None else self.scan.second.sino
        for a in (self.scan.sino, self.scan.angles, self.scan.clean, second):
            h.update(b"-" if a is None else np.ascontiguousarray(a).tobytes())
        self.data_hash = h.hexdigest()

    def context(self, work: Path, quiet: bool = False) -> Context:
        return Context(seed=self.seed, device=self.device, steps=self.steps, minutes=self.minutes,
                       tune_slice=self.tune, work_dir=work, log=(lambda msg: None) if quiet else self.log)


def _run_one(m: MethodConfig, row: Row, st: _Setting, work: Path) -> np.ndarray:
    """Both runs of one method, scored into ``row``; the full run's volume."""
    shape = st.scan.shape
    t0 = time.perf_counter()
    res = m.run(st.scan, st.context(work / "full"))
    row.seconds = time.perf_counter() - t0
    vol = _check_volume(res.volume, shape, m.label)
    row.train_seconds, row.params = res.train_seconds, dict(res.params)
    row.psnr, row.ssim = st.scorer.full(vol)
    when = res.info.get("snapshot_seconds", {})
    snaps = {name: {"label": name, "psnr": st.scorer.full(_check_volume(v, shape, m.label))[0],
                    "train_seconds": when.get(name)} for name, v in res.snapshots.items()}
    ev = m.run(st.eval_scan, st.context(work / "upsnr", quiet=True))
    row.upsnr, row.psnr_eval = st.scorer.unsupervised(_check_volume(ev.volume, shape, m.label))
    for name, snap in ev.snapshots.items():
        u, p = st.scorer.unsupervised(_check_volume(snap, shape, m.label))
        snaps.setdefault(name, {"label": name}).update(upsnr=u, psnr_eval=p)
    row.snapshots = list(snaps.values())
    return vol


def _key(m: MethodConfig, st: _Setting, groups: int) -> str:
    """What a finished method's result depends on: its config, the shared settings, the data."""
    h = hashlib.sha1(st.data_hash.encode())
    h.update(json.dumps([m.model_dump(mode="json"), type(m).__name__, st.scan.center, st.steps, st.minutes,
                         st.seed, st.device, groups, st.tune], sort_keys=True, default=str).encode())
    return h.hexdigest()


def _load_done(work: Path, key: str, shape: tuple[int, ...]) -> tuple[Row, np.ndarray] | None:
    """The row and volume of an earlier run of the same method on the same data, if it finished."""
    try:
        done = json.loads((work / "done.json").read_text())
        vol = np.load(work / "volume.npy")
    except (OSError, ValueError):
        return None
    if done.get("key") != key or vol.shape != tuple(shape):
        return None
    return Row(**done["row"]), vol


def _save_done(work: Path, key: str, row: Row, vol: np.ndarray) -> None:
    np.save(work / "volume.npy", vol)
    tmp = work / "done.json.tmp"
    tmp.write_text(json.dumps({"key": key, "row": asdict(row)}, default=str))
    tmp.replace(work / "done.json")  # written last: its presence means the method finished


def compare(
    scan: Scan,
    methods: str | list[Any],
    out: str | Path,
    *,
    steps: int = 500,
    minutes: float | None = None,
    seed: int = 0,
    device: str = "cpu",
    groups: int = UPSNR_GROUPS,
    log: Callable[[str], None] = lambda msg: None,
    resume: bool = True,
) -> dict[str, Any]:
    """Run ``methods`` (names or configs) on ``scan``; write the table and panel to ``out``.

    A method that needs what the scan lacks is skipped with the reason; one that fails is
    reported as failed (its traceback in ``out/work/<label>/error.txt``) and the others go on.
    With ``resume``, a method that finished in an earlier run into the same ``out`` with the
    same config, settings and data is not run again (its ``work/<label>/done.json`` and
    ``volume.npy`` are reused), so an interrupted comparison restarts where it stopped.
    """
    from .report import write_report

    configs = parse_methods(methods)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    z = scan.shape[0]
    tune = 0 if z >= 2 else -1
    keep = np.array([k for k in range(z) if k != tune])
    eval_scan, held = upsnr_split(scan, groups)
    st = _Setting(scan, eval_scan, _Scorer(scan, keep, held), tune, steps, minutes, seed, device, log)
    rows: list[Row] = []
    volumes: dict[str, np.ndarray] = {}
    for i, m in enumerate(configs, 1):
        row = Row(label=m.label, method=str(getattr(m, "method")))
        lacking = _missing(m, scan)
        if lacking:
            row.status, row.reason = "skipped", f"needs {lacking}"
            rows.append(row)
            log(f"[{i}/{len(configs)}] {m.label}: skipped, {row.reason}")
            continue
        work = out / "work" / m.label
        key = _key(m, st, groups)
        earlier = _load_done(work, key, scan.shape) if resume else None
        if earlier is not None:
            row, volumes[m.label] = earlier
            rows.append(row)
            log(f"[{i}/{len(configs)}] {_line(row)} (finished in an earlier run: reused)")
            continue
        rows.append(row)
        for sub in ("full", "upsnr"):
            (work / sub).mkdir(parents=True, exist_ok=True)
        (work / "done.json").unlink(missing_ok=True)
        try:
            volumes[m.label] = _run_one(m, row, st, work)
        except Exception as exc:  # one failing method must not lose the others
            row.status, row.reason = "failed", f"{type(exc).__name__}: {exc}"
            (work / "error.txt").write_text(traceback.format_exc())
            log(f"[{i}/{len(configs)}] {m.label}: FAILED, {row.reason} (traceback in {work / 'error.txt'})")
            continue
        _save_done(work, key, row, volumes[m.label])
        log(f"[{i}/{len(configs)}] {_line(row)}")
    result = {
        "scan": scan.name, "shape": list(scan.shape), "n_angles": int(scan.angles.size),
        "reported_slices": keep.tolist(), "tune_slice": tune, "upsnr_groups": groups,
        "data_range": st.scorer.data_range, "steps": steps, "seed": seed, "device": device,
        "rows": [asdict(r) for r in rows], "rank_check": rank_check(rows),
        "methods": [m.model_dump(mode="json") for m in configs],
    }
    (out / "compare.json").write_text(json.dumps(result, indent=2, default=str))
    write_report(result, scan, volumes, keep, out)
    return result


def _fmt(v: float | None, unit: str = "") -> str:
    return "-" if v is None else f"{v:.2f}{unit}"


def _line(row: Row) -> str:
    parts = [f"{row.label}:"]
    if row.psnr is not None:
        parts.append(f"PSNR {_fmt(row.psnr, ' dB')}, SSIM {_fmt(row.ssim)},")
    parts.append(f"uPSNR {_fmt(row.upsnr, ' dB') if row.upsnr is not None else '- (estimate not positive)'}, "
                 f"{row.seconds:.1f} s")
    return " ".join(parts)
