"""The ``tomodenoise`` command line: thin; parses, builds a config, calls a flow or the core.

    tomodenoise run SCAN --out DIR [-c run.yaml] [--set train.epochs=5] [--no-prefect]
    tomodenoise check SCAN [--out DIR] [-c run.yaml] [--set key=value]
    tomodenoise preview SCAN [-c run.yaml] [--set preprocess.center=1023.5] [--out preview.png]
    tomodenoise simulate foam|dynamic|xrdct --out scan.h5 [--size N --angles N --slices N ...]
    tomodenoise demo [--out DIR]
    tomodenoise config [--demo]
    tomodenoise export STORE [--format ome-zarr tiff] [--out DIR]
    tomodenoise verify STORE
    tomodenoise slurm train STORE | pipeline SCAN --out DIR | watch JOBID  [-c run.yaml] [--wait] ...
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import yaml

from . import logs, stopping
from .config import RunConfig, apply_sets, demo_config
from .logs import summary
from .hpc.command import add_slurm_parser
from .hpc.jobs import SlurmError
from .summary import metrics_table

log = logging.getLogger("tomodenoise.cli")
Runner = Callable[[RunConfig, "str | None"], dict[str, Any]]


def build_config(args: argparse.Namespace) -> RunConfig:
    cfg = RunConfig.from_file(args.config) if getattr(args, "config", None) else RunConfig()
    if getattr(args, "scan", None):
        cfg.input.path = str(Path(args.scan).expanduser().resolve())
    if getattr(args, "out", None):
        cfg.output.root = str(Path(args.out).expanduser().resolve())
    return apply_sets(cfg, getattr(args, "set", None) or [])


def prefect_runner() -> Any:
    """The Prefect runner (``flows.RUNNER``), found through the ``tomodenoise.runners`` entry point."""
    from importlib.metadata import entry_points

    found = entry_points(group="tomodenoise.runners", name="prefect")
    if not found:
        raise RuntimeError("the Prefect runner is not installed (the `tomodenoise.runners` entry point `prefect`): "
                           "reinstall tomodenoise with `pip install -e .`, or run with --no-prefect")
    return next(iter(found)).load()


def run_flow(cfg: RunConfig, reference: str | None = None) -> dict[str, Any]:
    """Run the pipeline as a Prefect flow in this process (reports to :func:`prefect_session`'s API)."""
    return prefect_runner().run(cfg, reference)


def run_core(cfg: RunConfig, reference: str | None = None) -> dict[str, Any]:
    """Run the pipeline without Prefect (same stages, sequential)."""
    from . import pipeline

    store = pipeline.run(cfg, reference=reference)
    return {"store": str(store.root), "metrics": json.loads((store.report_dir / "metrics.json").read_text())}


@contextmanager
def prefect_session(no_prefect: bool = False) -> Iterator[None]:
    """One Prefect API for this process (the runner's), named on the console's first line."""
    if no_prefect:
        summary(log, "Prefect: not used (--no-prefect)")
        yield
        return
    # importing Prefect sets up its logging, which is routed through ours before the server starts
    with prefect_runner().api(before_start=lambda: logs.configure(None, _verbosity_now())) as line:
        summary(log, line)
        try:
            yield
        except BaseException as e:  # say why now: the server's shutdown comes after
            if stopping.is_stop(e):
                stopping.arm(signal.SIGINT if isinstance(e, KeyboardInterrupt) else signal.SIGTERM)
                stopping.report(e)
            raise


def _verbosity_now() -> int:
    return int(os.environ.get(logs.ENV_VERBOSITY, logs.NORMAL))


def logged(runner: Runner) -> Runner:
    """``runner`` with the run log switched to the scan's ``<store>/report/run.log`` first."""
    from .pipeline import store_for

    def run(cfg: RunConfig, reference: str | None = None) -> dict[str, Any]:
        store = store_for(cfg)
        run_log = logs.run_log_path(store.root)
        logs.configure(run_log, _verbosity_now())
        log.info("tomodenoise %s: %s", " ".join(sys.argv[1:]), cfg.input.path)
        summary(log, f"{store.root.name}: {cfg.input.path} -> {store.root}/ (log: {run_log})")
        return runner(cfg, reference)

    return run


def cmd_run(args: argparse.Namespace) -> int:
    from .io import detect_format

    cfg = build_config(args)
    if args.reference and not Path(args.reference).is_file():
        raise FileNotFoundError(f"--reference {args.reference}: no such file")
    detect_format(cfg.input.path)  # a missing or unknown scan is refused before anything starts
    with prefect_session(args.no_prefect):
        result = logged(run_core if args.no_prefect else run_flow)(cfg, args.reference)
    store = Path(result["store"])
    print(metrics_table(result["metrics"]))
    previews = sorted((store / "report").glob("preview_z*.png"))
    if previews:
        print("previews (FBP | denoised | difference):")
        for p in previews:
            print(f"  {p}")
    for name, what in (("time_strip.png", "time steps (truth | FBP | denoised)"), ("spectra.png", "spectra of a few pixels"),
                       ("channel_maps.png", "channel maps")):
        if (store / "report" / name).exists():
            print(f"{what}: {store / 'report' / name}")
    print(f"wrote {store}/ (scan.zarr, model/, report/); full log: {logs.run_log_path(store)}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Validate the configuration, read the scan and plan every stage of a run, writing nothing."""
    import numpy as np

    from .io import read_scan
    from .pipeline.ingestion import refuse_splits
    from .pipeline.modalities import build_sinograms

    cfg = build_config(args)
    raw = read_scan(cfg.input.path, format=cfg.input.format, angles_file=cfg.input.angles_file,
                    angles_unit=cfg.input.angles_unit, slices=cfg.input.slices,
                    flats=cfg.input.flats, darks=cfg.input.darks, entry=cfg.input.entry)
    sg = build_sinograms(raw, cfg)
    refuse_splits(cfg, sg)
    a = np.asarray(sg.angles)
    print(f"OK {cfg.input.path}: {sg.modality} scan, sinogram (time, channel, z, angle, det) = "
          f"{tuple(sg.sinogram.shape)}, angles {np.nanmin(a):.4f}..{np.nanmax(a):.4f} rad, centre {sg.center:.2f}, "
          f"{sg.n_clamped} values clamped before -log")
    if sg.modality == "dynamic":
        n = sg.info["projections_per_step"]
        print(f"  {len(n)} time steps ({sg.info['window']} windows) of {min(n)} to {max(n)} projections "
              f"(mean {np.mean(n):.2f}); time {sg.time[0]:.4g}..{sg.time[-1]:.4g} {sg.time_attrs.get('units', '')}")
    if sg.modality == "xrdct":
        ch = np.asarray(sg.channel, dtype=np.float64)
        print(f"  {ch.size} channels, {sg.channel_attrs.get('long_name')} {ch.min():.4g}..{ch.max():.4g} "
              f"{sg.channel_attrs.get('units', '')}")
    for key, what in (("flats_source", "flats"), ("darks_source", "darks")):
        if raw.attrs.get(key):
            print(f"  {what}: {raw.attrs[key]}")
    # the warnings about the input (sg.info["warnings"]) were logged as they arose: on the console once
    print_plans(cfg, raw, sg)
    return 0


def print_plans(cfg: RunConfig, raw: Any, sg: Any) -> None:
    """Every stage's plan for a run of ``cfg`` on the scan read (what it would refuse is refused
    here), one line each."""
    from .pipeline import STAGES, Context, Layout, store_for
    from .pipeline.stages import refuse_all

    store, ctx = store_for(cfg), Context(layout=Layout.of_sinograms(sg.sinogram, cfg), sinograms=(raw, sg))
    refuse_all(store, cfg, ctx.layout, ctx)
    redo = None  # the first stage to run: every later one runs again too (its input changes)
    for stage in STAGES:
        plan = stage.plan(store, cfg, ctx)
        if redo and (plan.current or plan.done):
            what = f"to run again after {redo}"
        elif plan.current:
            what = "already complete"
        elif stage.chunked:
            n = len(plan.units)
            what = (f"{plan.todo} of {plan.total} chunks in {n} task{'' if n == 1 else 's'}, "
                    f"up to about {plan.unit_bytes / 2**20:.0f} MiB of data per task at a time")
        else:
            what = "to run"
        if not plan.current and stage.key != "report":
            redo = redo or stage.key
        print(f"  {stage.key}: {what}")


def cmd_preview(args: argparse.Namespace) -> int:
    """The centre-of-rotation preview PNG of a scan (central slice at the centre and +-0.5..2 px)."""
    from .preview import preview_scan

    preview_scan(build_config(args), args.png)
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    if Path(args.out).exists() and not args.force:
        raise FileExistsError(f"{args.out} exists; use --force to replace it")
    if args.kind == "foam":
        from .simulate.scan import simulate_foam_scan

        out = simulate_foam_scan(
            args.out, size=args.size or 256, n_angles=args.angles or 512, n_slices=args.slices or 8, i0=args.i0 or 100.0,
            seed=args.seed, n_spheres=args.spheres, phantom=args.phantom,
        )
        print(f"wrote {out['scan']} (Data Exchange) and {out['reference']} (clean FBP, z y x)")
        return 0
    if args.kind == "dynamic":
        from .simulate.dynamic import simulate_dynamic_scan

        out = simulate_dynamic_scan(
            args.out, size=args.size or 128, n_slices=args.slices or 4, n_steps=args.steps,
            projections_per_step=args.projections_per_step, span_deg=args.span, step_seconds=args.step_seconds,
            i0=args.i0 or 1000.0, seed=args.seed, model=args.phantom, model_number=args.model,
        )
        print(f"wrote {out['scan']} (Data Exchange with time stamps: {args.steps} time steps of {args.span:g} deg, "
              f"{args.projections_per_step:g} projections each) and {out['reference']} (truth, time channel z y x)")
        hint = "" if args.span == 180 else f" --set time.span_deg={args.span:g}"
        print(f"run: tomodenoise run {out['scan']} --out OUT --set time.window=angle{hint} "
              f"--reference {out['reference']}")
        return 0
    from .simulate.xrdct_phantom import simulate_xrdct_scan

    out = simulate_xrdct_scan(
        args.out, size=args.size or 64, n_slices=args.slices or 1, n_angles=args.angles or 90, full_turn=not args.half_turn,
        counts=args.counts, n_channels=args.channels, ingredients=args.ingredients, seed=args.seed,
    )
    print(f"wrote {out['scan']} (XRD-CT sinograms, channel z angle translation; {len(out['channels'])} channels) "
          f"and {out['reference']} (truth, time channel z y x)")
    print(f"run: tomodenoise run {out['scan']} --out OUT --reference {out['reference']}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    with prefect_session(args.no_prefect):
        run_demo(Path(args.out), runner=logged(run_core if args.no_prefect else run_flow), quick=args.quick,
                 scans=tuple(args.scans))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """``tomodenoise bench`` moved out of the installed package: say where to (exit status 2)."""
    import shlex

    log.error("`tomodenoise bench` is gone: the benchmarks live in the repository's benchmarks/ folder, not in the "
              "installed package, so from a checkout run `%s` instead (`python -m benchmarks --help` lists them)",
              shlex.join(["python", "-m", "benchmarks", args.kind or "NAME", *args.options]))
    return 2


def cmd_compare(args: argparse.Namespace) -> int:
    from .methods import parse_methods
    from .methods.compare import compare
    from .methods.load import load_scan

    out = Path(args.out)
    if args.config:
        spec = yaml.safe_load(Path(args.config).read_text()) or {}
        methods = spec.get("methods", [spec]) if isinstance(spec, dict) else spec  # one mapping: one method
    else:
        methods = args.methods or "fbp,sirt,tv,gaussian,bm3d,noise2self,sdr,n2i"
    configs = parse_methods(methods)  # bad names fail here, before any reading
    logs.configure(out / "compare.log", _verbosity_now())
    log.info("tomodenoise %s", " ".join(sys.argv[1:]))
    scan = load_scan(args.scan, reference=args.reference, second=args.second,
                     slices=tuple(args.slices) if args.slices else None)
    summary(log, f"{scan.name}: {scan.shape[0]} slices of {scan.shape[1]} x {scan.shape[2]} from "
                 f"{scan.angles.size} projections; reference: {'yes' if scan.clean is not None else 'none'}; "
                 f"methods: {', '.join(m.label for m in configs)}")
    result = compare(scan, configs, out, steps=args.steps, minutes=args.minutes, seed=args.seed,
                     device=args.device, log=lambda msg: summary(log, msg), resume=not args.fresh)
    failed = [r["label"] for r in result["rows"] if r["status"] == "failed"]
    summary(log, f"table: {out / 'compare.md'}; panel: {out / 'panel.png'}; log: {out / 'compare.log'}")
    return 1 if failed else 0


def cmd_export(args: argparse.Namespace) -> int:
    """Write a finished run's denoised volume and FBP as OME-Zarr (napari, Fiji) and/or TIFF."""
    from .export import export

    for p in export(args.store, args.format, args.out):
        print(p)
    return 0


DAMAGE_FOUND = 3  # the exit status of `tomodenoise verify` when a stage's output is damaged


def cmd_verify(args: argparse.Namespace) -> int:
    """Check every complete stage of a store: chunks as written, the checkpoint readable."""
    from .io.store import ScanStore
    from .pipeline import verify_store

    store = ScanStore(Path(args.store).expanduser().resolve())
    if not store.exists():
        raise FileNotFoundError(f"{store.root}: no scan store here (a <out>/<scan_id>/ folder with scan.zarr)")
    cfg = RunConfig.model_validate(store.attrs["config"])  # the settings it was made with
    if "recon" in store.open():
        cfg.splits.k = int(store.array("recon").shape[0])
    found = verify_store(store, cfg)
    for stage, damage in found.items():
        print(f"{stage}: " + ("ok" if not damage else f"{len(damage)} damaged: " + "; ".join(damage[:5])
                              + (f"; ... ({len(damage) - 5} more)" if len(damage) > 5 else "")))
    if any(found.values()):
        print("run the same `tomodenoise run` again: it computes the damaged parts again and keeps the rest")
        return DAMAGE_FOUND
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    cfg = demo_config() if args.demo else RunConfig()
    sys.stdout.write(cfg.to_yaml())
    return 0


def make_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    loud = common.add_mutually_exclusive_group()
    loud.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                      help="every INFO record and tracebacks on the console")
    loud.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                      help="only the result (and errors)")
    p = argparse.ArgumentParser(prog="tomodenoise", parents=[common],
                                description="Self-supervised (Noise2Inverse) denoising for tomography")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", parents=[common], help="denoise a scan: ingest, reconstruct splits, train, denoise, report")
    r.add_argument("scan", help="Data Exchange/NeXus HDF5, TIFF folder, .npy/.npz or .zarr")
    r.add_argument("--out", required=True, help="output root; writes OUT/<scan_id>/")
    r.add_argument("-c", "--config", help="run configuration YAML (see `tomodenoise config`)")
    r.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value, e.g. train.epochs=5")
    r.add_argument("--reference", help="clean volume .npy (z, y, x), or (time, channel, z, y, x) for dynamic and XRD-CT scans, for PSNR/SSIM (simulations)")
    r.add_argument("--no-prefect", action="store_true", help="run the core directly, without a Prefect flow")
    r.set_defaults(func=cmd_run)

    c = sub.add_parser("check", parents=[common], help="validate a scan and configuration; writes nothing")
    c.add_argument("scan")
    c.add_argument("--out", help="the output root a run would use (its store is checked, not written)")
    c.add_argument("-c", "--config")
    c.add_argument("--set", action="append", metavar="KEY=VALUE")
    c.set_defaults(func=cmd_check)

    pv = sub.add_parser("preview", parents=[common], help="centre-of-rotation preview PNG: the central slice at the "
                                                          "centre found and at +-0.5, +-1, +-2 px, and the score curve")
    pv.add_argument("scan")
    pv.add_argument("-c", "--config")
    pv.add_argument("--set", action="append", metavar="KEY=VALUE", help="e.g. preprocess.center=1023.5")
    pv.add_argument("--out", dest="png", help="PNG to write (default ./<scan id>_preview_centre.png)")
    pv.set_defaults(func=cmd_preview)

    s = sub.add_parser("simulate", parents=[common], help="write a simulated scan (foam, dynamic 4D or XRD-CT) and its truth")
    s.add_argument("kind", choices=["foam", "dynamic", "xrdct"])
    s.add_argument("--out", required=True, help="output .h5 file")
    s.add_argument("--size", type=int, default=None, help="slice size and detector width (pixels; foam 256, "
                                                          "dynamic 128, xrdct 64)")
    s.add_argument("--angles", type=int, default=None, help="projections (foam 512; xrdct 90)")
    s.add_argument("--slices", type=int, default=None, help="detector rows (foam 8, dynamic 4, xrdct 1)")
    s.add_argument("--i0", type=float, default=None, help="incident photons per pixel (foam 100, dynamic 1000)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--spheres", type=int, default=2000, help="foam: voids in a generated foam")
    s.add_argument("--phantom", help="foam: phantom.h5 of the reference benchmark; dynamic: a TomoPhantom "
                                     "Phantom2DLibrary.dat (default: the built-in 2D+t model)")
    s.add_argument("--model", type=int, default=101, help="dynamic: the TomoPhantom 2D+t model number in --phantom")
    s.add_argument("--steps", type=int, default=8, help="dynamic: time steps")
    s.add_argument("--projections-per-step", type=float, default=100.5,
                   help="dynamic: projections per time step (need not be an integer: steps are interlaced)")
    s.add_argument("--span", type=float, default=180.0, help="dynamic: rotation per time step in degrees")
    s.add_argument("--step-seconds", type=float, default=0.1, help="dynamic: seconds per time step")
    s.add_argument("--counts", type=float, default=100.0, help="xrdct: photons of the brightest sinogram value")
    s.add_argument("--channels", type=int, default=None, help="xrdct: diffraction channels (bins averaged)")
    s.add_argument("--ingredients", help="xrdct: folder with Patterns.h5 and catalyst_particles_*.tif (e.g. "
                                         "nDTomo's); default: built-in synthetic phases")
    s.add_argument("--half-turn", action="store_true", help="xrdct: angles over 180 deg instead of a full turn")
    s.add_argument("--force", action="store_true", help="replace OUT if it exists")
    s.set_defaults(func=cmd_simulate)

    d = sub.add_parser("demo", parents=[common], help="the whole pipeline on a simulated foam and on a real scan")
    d.add_argument("--out", default="demo-output")
    d.add_argument("--quick", action="store_true", help="smaller and shorter (for tests)")
    d.add_argument("--no-prefect", action="store_true")
    d.add_argument("--scans", nargs="+", choices=["foam", "tooth"], default=["foam", "tooth"],
                   help="which of the demo's scans to run (default: both)")
    d.set_defaults(func=cmd_demo)

    b = sub.add_parser("bench", help="moved: the benchmarks run as `python -m benchmarks NAME` from a checkout",
                       description="Moved: the benchmarks are not installed; from a checkout of the repository run "
                                   "`python -m benchmarks NAME [options]` (`python -m benchmarks --help` lists them).")
    b.add_argument("kind", nargs="?", help="the benchmark (foam, real, reference, ...)")
    b.add_argument("options", nargs=argparse.REMAINDER, help="its options")
    b.set_defaults(func=cmd_bench)

    cm = sub.add_parser("compare", parents=[common], help="run several denoising methods on one scan: table and panel")
    cm.add_argument("scan", help="static scan (any format `run` reads); a `<stem>_clean.npy` beside it is the reference")
    cm.add_argument("--methods", help="comma-separated names (default fbp,sirt,tv,gaussian,bm3d,noise2self,sdr,n2i)")
    cm.add_argument("-c", "--config", help="YAML list of methods with parameters ({method: tv, weight: 0.05}, ...)")
    cm.add_argument("--out", required=True, help="folder for compare.md, compare.json, panel.png")
    cm.add_argument("--reference", help="clean volume .npy (z, y, x) for PSNR/SSIM and the supervised methods")
    cm.add_argument("--second", help="a repeat scan of the same object (Noise2Noise)")
    cm.add_argument("--slices", type=int, nargs=2, metavar=("START", "STOP"), help="detector rows to use")
    cm.add_argument("--steps", type=int, default=500, help="training steps of every learned method (default 500)")
    cm.add_argument("--minutes", type=float, default=None, help="wall-clock cap per learned method")
    cm.add_argument("--seed", type=int, default=0)
    cm.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    cm.add_argument("--fresh", action="store_true",
                    help="run every method again (default: reuse the methods an earlier run into --out finished)")
    cm.set_defaults(func=cmd_compare)

    e = sub.add_parser("export", parents=[common], help="write a run's denoised volume and FBP as OME-Zarr and/or TIFF")
    e.add_argument("store", help="the <out>/<scan_id>/ folder that `tomodenoise run` wrote")
    e.add_argument("--format", nargs="+", choices=["ome-zarr", "tiff"], default=["ome-zarr", "tiff"],
                   help="what to write (default: both)")
    e.add_argument("--out", help="folder to write into (default: STORE/export/)")
    e.set_defaults(func=cmd_export)

    v = sub.add_parser("verify", parents=[common], help="check a store's complete stages: chunks as written, "
                                                        "the checkpoint readable (exit 3 on damage)")
    v.add_argument("store", help="the <out>/<scan_id>/ folder that `tomodenoise run` wrote")
    v.set_defaults(func=cmd_verify)

    add_slurm_parser(sub, common, build_config)

    g = sub.add_parser("config", parents=[common], help="print a configuration as YAML")
    g.add_argument("--demo", action="store_true", help="the demo's configuration instead of the defaults")
    g.set_defaults(func=cmd_config)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    quiet, verbose = getattr(args, "quiet", False), getattr(args, "verbose", False)
    verbosity = logs.QUIET if quiet else logs.VERBOSE if verbose else logs.NORMAL
    # Prefect's loggers keep no console handlers of their own (here and in Dask workers)
    os.environ.setdefault("PREFECT_LOGGING_SETTINGS_PATH", str(Path(__file__).parent / "data" / "prefect-logging.yml"))
    logs.configure(None, verbosity)
    stopping.install()
    # User errors (bad scan, bad configuration, missing or clashing files): one sentence on the
    # console and exit status 2. Anything else: one sentence too, exit status 1. Tracebacks go
    # to the run log (and to the console with -v).
    try:
        return int(args.func(args) or 0)
    except (ConnectionError, TimeoutError) as e:  # OSErrors, but not the input's fault
        log.error("%s: %s (the Prefect server or a Dask worker could not be reached; the traceback is in the "
                  "run log, or run with -v)", type(e).__name__, e, exc_info=True)
        return 1
    except (ValueError, OSError, yaml.YAMLError) as e:  # ScanError, ConfigError and ValidationError are ValueErrors
        import errno

        from .config_errors import one_sentence

        if isinstance(e, OSError) and e.errno == errno.ELOOP:  # a path through a link that leads back to itself
            log.error("%s is a symbolic link loop (a link that leads, through others, back to itself): fix or "
                      "remove the link", e.filename or e, exc_info=True)
        elif isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            where = f" writing {e.filename}" if e.filename else ""
            log.error("the disk is full%s (%s): free some space or set output.root to a larger disk, then run the "
                      "same command again: it resumes", where, e.strerror, exc_info=True)
        else:  # pydantic's and PyYAML's own text only in the run log (the traceback)
            log.error("%s", one_sentence(e), exc_info=True)
        return 2
    except SlurmError as e:  # SLURM lost the run's jobs again and again, or sbatch failed: its words
        log.error("%s", e, exc_info=True)
        return 1
    except BaseException as e:
        if stopping.is_stop(e):
            stopping.arm(signal.SIGINT if isinstance(e, KeyboardInterrupt) else signal.SIGTERM)
            return stopping.report(e)
        if isinstance(e, SystemExit):
            raise
        if isinstance(e, RuntimeError) and str(e).startswith("Symlink loop from "):  # Path.resolve(), Python < 3.13
            log.error("%s is a symbolic link loop (a link that leads, through others, back to itself): fix or "
                      "remove the link", str(e).removeprefix("Symlink loop from ").strip("'\""), exc_info=True)
            return 2
        log.error("%s: %s (a bug or a failure outside tomodenoise; the traceback is in the run log, "
                  "or run with -v)", type(e).__name__, e, exc_info=True)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
