"""A dynamic (2D + time) phantom with exact sinograms, and a simulated continuous-rotation scan.

The phantom follows TomoPhantom's 2D+t model syntax (``Phantom2DLibrary.dat``)::

    Model : 101;
    Components : 03;
    TimeSteps : 350;
    Object : rectangle 0.3 -0.4 -0.4 0.05 0.05 0.0;
    Endvar : 1.0 0.1 0.1 0.5 0.25 -45.0;
    ...

Each ``Object : <type> C0 x0 y0 a b angle;`` gives an object's start state and the
``Endvar : C0 x0 y0 a b angle;`` after it its end state; every parameter moves linearly
from start to end as the acquisition goes on (``progress`` 0 -> 1), continuously, not in
``TimeSteps`` jumps. ``C0`` is the attenuation inside the object (objects add up where
they overlap), ``(x0, y0)`` the centre on ``[-1, 1]^2``, ``angle`` in degrees. For an
``ellipse`` ``a`` and ``b`` are the semi-axes, for a ``rectangle`` the full side lengths
(as in TomoPhantom); ``a`` lies along the direction at ``angle`` from the +x axis,
counter-clockwise towards +y. An ``Object`` without ``Endvar`` stays still.

Orientation: that of :mod:`tomodenoise.simulate.ellipses` and :mod:`tomodenoise.recon`
(+x to the right, +y up; image pixel ``[i, j]`` at ``x = (j - (n - 1) / 2) * 2 / n``,
``y = ((n - 1) / 2 - i) * 2 / n``), so ``recon.fbp(dynamic_sinogram(...))`` shows
``dynamic_phantom(...)`` upright. TomoPhantom's own images may be mirrored or transposed
against it; the shapes and their motion are the same.

A slice at height ``z`` (``|z| < 1``) is the cross-section of ellipsoid-like solids: every
object's ``a`` and ``b`` are scaled by ``sqrt(1 - z^2)``, so slices differ smoothly.
"""

from __future__ import annotations

import math
import re
from os import PathLike
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..io.dxchange import write_dxchange
from .noise import photon_counts

__all__ = [
    "DEFAULT_ABSORPTION",
    "DEFAULT_TEMPORAL_MODEL",
    "TemporalObject",
    "dynamic_phantom",
    "dynamic_sinogram",
    "parse_temporal_model",
    "simulate_dynamic_scan",
]

#: The built-in phantom: TomoPhantom's 2D+t model 101 (a rectangle and two ellipses that
#: move and grow) inside a static body with two static features.
DEFAULT_TEMPORAL_MODEL = """\
# TomoPhantom 2D+t model 101 (Apache-2.0 parameters) plus a static body and two static features
Model : 101;
Components : 06;
TimeSteps : 350;
Object : rectangle 0.3 -0.4 -0.4 0.05 0.05 0.0;
Endvar : 1.0 0.1 0.1 0.5 0.25 -45.0;
Object : ellipse 0.3 -0.75 -0.2 0.05 0.05 0.0;
Endvar : 1.0 0.2 0.7 0.3 0.15 -70.0;
Object : ellipse 0.3 -0.2 -0.75 0.05 0.05 0.0;
Endvar : 1.0 0.7 0.2 0.15 0.3 70.0;
Object : ellipse 0.25 0.0 0.0 0.92 0.85 10.0;
Object : ellipse -0.15 -0.5 0.45 0.14 0.09 30.0;
Object : rectangle 0.35 0.5 -0.45 0.2 0.12 -20.0;
"""

#: Default absorption: about 50 % transmission through the thickest part of the default
#: phantom (its largest line integral, 1.33 in phantom units, at the end of the motion).
DEFAULT_ABSORPTION = 0.52

_KINDS = ("ellipse", "rectangle")
_LINE = re.compile(r"^\s*([A-Za-z_]+)\s*:\s*(.*?)\s*;?\s*$")


class TemporalObject(NamedTuple):
    """One object of a 2D+t model: its type and start and end parameters.

    ``start`` and ``end`` are ``(C0, x0, y0, a, b, angle_deg)`` (see the module docstring).
    """

    kind: str
    start: tuple[float, float, float, float, float, float]
    end: tuple[float, float, float, float, float, float]


def _numbers(text: str, n: int, where: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(v) for v in text.replace(",", " ").split())
    except ValueError:
        raise ValueError(f"{where}: expected {n} numbers, got {text!r}") from None
    if len(vals) != n or not all(math.isfinite(v) for v in vals):
        raise ValueError(f"{where}: expected {n} finite numbers, got {text!r}")
    return vals


def parse_temporal_model(text_or_path: str | PathLike[str], model: int = 101) -> list[TemporalObject]:
    """Parse one model of a TomoPhantom 2D(+t) model library.

    Parameters
    ----------
    text_or_path : str or os.PathLike
        The library text (e.g. :data:`DEFAULT_TEMPORAL_MODEL`) or the path of a file such as
        TomoPhantom's ``Phantom2DLibrary.dat``. A ``str`` is taken as text when it has a
        ``Model :`` line, else as a path.
    model : int
        The model number to read.

    Returns
    -------
    list of TemporalObject
        The model's objects in file order (an object without ``Endvar`` has ``end == start``).

    Raises
    ------
    ValueError
        When the model is missing, has an object type other than ellipse/rectangle,
        malformed lines, an ``Endvar`` without its ``Object``, non-positive sizes or a
        ``Components`` count that does not match its objects.
    """
    is_text = isinstance(text_or_path, str) and re.search(r"(?im)^\s*model\s*:", text_or_path)
    text = text_or_path if is_text else Path(text_or_path).read_text()
    found, inside, components = False, False, None
    objects: list[list] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        m = _LINE.match(line) if line else None
        if m is None:
            continue
        key, value = m.group(1).lower(), m.group(2).strip().rstrip(";").strip()
        where = f"model {model}, line {lineno}"
        if key == "model":
            inside = int(float(value)) == int(model)
            found = found or inside
        elif not inside:
            continue
        elif key == "components":
            components = int(float(value))
        elif key == "object":
            kind, rest = (value.split(None, 1) + ["", ""])[:2]
            kind = kind.lower()
            if kind not in _KINDS:
                raise ValueError(f"{where}: object type {kind!r} is not supported (only {', '.join(_KINDS)})")
            objects.append([kind, _numbers(rest, 6, where), None])
        elif key == "endvar":
            if not objects or objects[-1][2] is not None:
                raise ValueError(f"{where}: 'Endvar' without an 'Object' before it")
            objects[-1][2] = _numbers(value, 6, where)
    if not found:
        raise ValueError(f"model {model} not found in the model library")
    if components is not None and components != len(objects):
        raise ValueError(f"model {model}: 'Components : {components}' but {len(objects)} objects")
    out = [TemporalObject(k, s, e if e is not None else s) for k, s, e in objects]
    for i, o in enumerate(out):
        if min(o.start[3:5] + o.end[3:5]) <= 0:
            raise ValueError(f"model {model}: object {i} ({o.kind}) needs sizes a, b > 0")
    return out


def _states(objects: list[TemporalObject], progress: np.ndarray, size: int, z: float) -> list:
    """Per object: ``(kind, (c0, x0, y0, a, b, phi))`` in pixels/radians at each ``progress``.

    Rectangle ``a``, ``b`` become half side lengths.
    """
    if not abs(z) < 1:
        raise ValueError(f"z must be in (-1, 1), got {z}")
    scale = size / 2.0
    shrink = math.sqrt(1.0 - z * z)
    out = []
    for o in objects:
        s, e = np.asarray(o.start, dtype=np.float64), np.asarray(o.end, dtype=np.float64)
        p = s[:, None] + (e - s)[:, None] * progress[None, :]  # (6, n)
        half = 0.5 if o.kind == "rectangle" else 1.0
        out.append((o.kind, (p[0], p[1] * scale, p[2] * scale, p[3] * scale * shrink * half,
                             p[4] * scale * shrink * half, np.deg2rad(p[5]))))
    return out


def dynamic_phantom(
    objects: list[TemporalObject],
    size: int,
    progress: float = 0.0,
    *,
    z: float = 0.0,
    supersampling: int = 4,
) -> np.ndarray:
    """Rasterise a 2D+t phantom at one moment on a ``size x size`` grid over ``[-1, 1]^2``.

    Parameters
    ----------
    objects : list of TemporalObject
        From :func:`parse_temporal_model`.
    size : int
        Image side in pixels (pixel size ``2 / size``).
    progress : float
        Where in the motion: 0 = start state, 1 = end state (linear in between).
    z : float
        Slice height in ``(-1, 1)``: sizes are scaled by ``sqrt(1 - z^2)``.
    supersampling : int
        ``s x s`` sub-samples per pixel (area-fraction anti-aliasing); 1 = centres.

    Returns
    -------
    numpy.ndarray
        ``(size, size)`` float32 attenuation (``C0`` units), +y up (row 0 at the top).
    """
    s = int(supersampling)
    if s < 1 or size < 1:
        raise ValueError(f"size and supersampling must be >= 1, got {size}, {supersampling}")
    sub = (np.arange(s) + 0.5) / s - 0.5
    x = (np.arange(size)[:, None] - (size - 1) / 2 + sub[None, :]).ravel()
    y = ((size - 1) / 2 - np.arange(size)[:, None] - sub[None, :]).ravel()
    img = np.zeros((size * s, size * s), dtype=np.float64)
    for kind, par in _states(objects, np.array([float(progress)]), size, z):
        c0, x0, y0, a, b, phi = (float(v[0]) for v in par)
        dx, dy = x[None, :] - x0, y[:, None] - y0
        p = dx * math.cos(phi) + dy * math.sin(phi)
        q = -dx * math.sin(phi) + dy * math.cos(phi)
        inside = (p / a) ** 2 + (q / b) ** 2 <= 1.0 if kind == "ellipse" else (np.abs(p) <= a) & (np.abs(q) <= b)
        img += c0 * inside
    return img.reshape(size, s, size, s).mean(axis=(1, 3)).astype(np.float32)


def dynamic_sinogram(
    objects: list[TemporalObject],
    angles: np.ndarray,
    progress: float | np.ndarray,
    size: int,
    *,
    z: float = 0.0,
    n_det: int | None = None,
    supersampling: int = 1,
) -> np.ndarray:
    """Exact parallel-beam line integrals, each projection at its own moment of the motion.

    Ellipses as in :func:`tomodenoise.simulate.ellipses.ellipse_sinogram`; a rectangle with
    half sides ``A`` (along ``phi``) and ``B`` projects at angle ``theta`` to a trapezoid:
    with ``ca = A |cos(theta - phi)|`` and ``cb = B |sin(theta - phi)|``, the chord length
    is ``min(2A / |sin|, 2B / |cos|)`` for ``|t| <= |ca - cb|`` and falls linearly to 0 at
    ``|t| = ca + cb`` (``t``: detector coordinate from the projected centre).

    Parameters
    ----------
    objects : list of TemporalObject
        From :func:`parse_temporal_model`.
    angles : numpy.ndarray
        ``(angle,)`` radians (any range: continuous rotation goes through many turns).
    progress : float or numpy.ndarray
        Where in the motion each projection is taken (0 = start, 1 = end): a scalar (a
        frozen phantom) or one value per angle.
    size : int
        Image side the phantom's ``[-1, 1]^2`` maps to (pixel units: ``size / 2`` per unit).
    z : float
        Slice height in ``(-1, 1)``.
    n_det : int, optional
        Detector columns (unit width) centred on the rotation axis; default ``size``.
    supersampling : int
        Rays averaged per detector pixel (1 = the centre ray).

    Returns
    -------
    numpy.ndarray
        ``(angle, det)`` float32 line integrals in pixel units.
    """
    ang = np.asarray(angles, dtype=np.float64)
    if ang.ndim != 1:
        raise ValueError(f"angles must be 1-D, got shape {ang.shape}")
    prog = np.broadcast_to(np.asarray(progress, dtype=np.float64), ang.shape).astype(np.float64)
    n_det = int(size if n_det is None else n_det)
    s = int(supersampling)
    if s < 1 or n_det < 1:
        raise ValueError(f"n_det and supersampling must be >= 1, got {n_det}, {supersampling}")
    sub = (np.arange(s) + 0.5) / s - 0.5
    u = (np.arange(n_det)[:, None] - (n_det - 1) / 2 + sub[None, :]).ravel()
    sino = np.zeros((ang.shape[0], u.shape[0]), dtype=np.float64)
    cos, sin = np.cos(ang), np.sin(ang)
    for kind, (c0, x0, y0, a, b, phi) in _states(objects, prog, size, z):
        t = u[None, :] - (x0 * cos + y0 * sin)[:, None]
        ct, st = np.cos(ang - phi), np.sin(ang - phi)
        if kind == "ellipse":
            w2 = (a * ct) ** 2 + (b * st) ** 2
            sino += (c0 * 2.0 * a * b / w2)[:, None] * np.sqrt(np.maximum(w2[:, None] - t * t, 0.0))
            continue
        ca, cb = a * np.abs(ct), b * np.abs(st)
        with np.errstate(divide="ignore"):
            chord = np.minimum(2.0 * a / np.abs(st), 2.0 * b / np.abs(ct))
        ramp = 2.0 * np.minimum(ca, cb)
        frac = np.clip((ca + cb)[:, None] - np.abs(t), 0.0, None) / np.maximum(ramp, 1e-12)[:, None]
        sino += (c0 * chord)[:, None] * np.minimum(frac, 1.0)
    return sino.reshape(ang.shape[0], n_det, s).mean(axis=2).astype(np.float32)


def simulate_dynamic_scan(
    out: str | Path,
    *,
    size: int = 128,
    n_slices: int = 4,
    n_steps: int = 8,
    projections_per_step: float = 100.5,
    span_deg: float = 180.0,
    step_seconds: float = 0.1,
    i0: float = 1000.0,
    absorption: float = DEFAULT_ABSORPTION,
    seed: int = 0,
    model: str | Path | None = None,
    model_number: int = 101,
    n_flats: int = 4,
    z_max: float = 0.5,
) -> dict:
    """Write a noisy continuous-rotation scan of a moving phantom and its truth per time step.

    Projection ``i`` is taken at ``t_i = i * dt`` (``dt = step_seconds /
    projections_per_step``) at angle ``theta_i = t_i * span / step_seconds`` (unwrapped:
    it goes on increasing through many turns), with the phantom in its state at ``t_i``
    (moving linearly from start to end over the ``n_steps * step_seconds`` acquisition).
    Time step ``k`` is the window ``[k, k + 1) * step_seconds``: ``span_deg`` of rotation.
    With a non-integer ``projections_per_step`` successive steps are interlaced (their
    angles are offset). There are ``floor(n_steps * projections_per_step)`` projections.

    The slice is ``size`` x ``size`` pixels over ``[-1, 1]^2`` (pixel size ``2 / size``)
    and the detector ``size`` pixels wide; detector row ``k`` images height
    ``z_k = linspace(0, z_max, n_slices)[k]``. Noise: Poisson counts at ``i0`` photons
    (:func:`tomodenoise.simulate.noise.photon_counts`), flats = ``i0``, darks = 0.

    Parameters
    ----------
    out : str or pathlib.Path
        The Data Exchange ``.h5`` file to write (with ``/exchange/timestamps``).
    size, n_slices, n_steps : int
        Slice side (= detector width), detector rows, time steps.
    projections_per_step : float
        Projections per time step (need not be an integer).
    span_deg, step_seconds : float
        Rotation per time step (degrees) and its duration (seconds).
    i0, absorption : float
        Incident photons per pixel; factor on the physical line integrals (default: about
        50 % transmission through the thickest part of the built-in phantom).
    seed : int
        Seed of the noise.
    model, model_number : str, pathlib.Path or None; int
        A TomoPhantom model library (text or file) and the model in it; default the
        built-in :data:`DEFAULT_TEMPORAL_MODEL`.
    n_flats : int
        Flat and dark frames.
    z_max : float
        Height of the last slice, in ``[0, 1)``.

    Returns
    -------
    dict
        ``scan``: the ``.h5``; ``reference``: ``<stem>_truth.npy``, float32 ``(time, 1, z,
        y, x)``, the phantom at each step's centre time on the scale the pipeline
        reconstructs the raw counts at (attenuation x ``absorption`` x pixel size per
        pixel); ``times``: the window centre times (s); ``angles_per_step``: projections
        in each window; ``z``: slice heights; ``absorption``.
    """
    n_proj = math.floor(n_steps * projections_per_step + 1e-9)
    if size < 16 or n_slices < 1 or n_steps < 1 or n_flats < 1:
        raise ValueError(f"need size >= 16, n_slices, n_steps, n_flats >= 1; got {size}, {n_slices}, {n_steps}, "
                         f"{n_flats}")
    if not (projections_per_step > 0 and span_deg > 0 and step_seconds > 0 and n_proj >= 2):
        raise ValueError("projections_per_step, span_deg and step_seconds must be > 0, with >= 2 projections")
    if not 0 <= z_max < 1:
        raise ValueError(f"z_max must be in [0, 1), got {z_max}")
    objects = parse_temporal_model(DEFAULT_TEMPORAL_MODEL if model is None else model, model_number)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pixel_size = 2.0 / size
    i = np.arange(n_proj, dtype=np.float64)
    t = i * (step_seconds / projections_per_step)
    angles = i * (np.deg2rad(span_deg) / projections_per_step)
    step = np.floor(i / projections_per_step + 1e-9).astype(np.int64)
    progress = t / (n_steps * step_seconds)
    z = np.linspace(0.0, z_max, n_slices) if n_slices > 1 else np.zeros(1)
    clean = np.stack([dynamic_sinogram(objects, angles, progress, size, z=float(zk), supersampling=2) for zk in z],
                     axis=1)  # (angle, z, det)
    counts = photon_counts(clean, i0, absorption, np.random.default_rng(seed), pixel_size=pixel_size)
    flats = np.full((n_flats, n_slices, size), i0, dtype=np.float32)
    darks = np.zeros((n_flats, n_slices, size), dtype=np.float32)
    write_dxchange(out, counts, flats, darks, angles, timestamps=t)
    centres = (np.arange(n_steps) + 0.5) * step_seconds
    # -log(counts / I0) = absorption * pixel_size * (line integral in pixels): the truth on
    # the scale the pipeline reconstructs the raw counts at.
    factor = np.float32(absorption * pixel_size)
    truth = np.stack([np.stack([dynamic_phantom(objects, size, (k + 0.5) / n_steps, z=float(zk)) for zk in z])
                      for k in range(n_steps)])[:, None] * factor
    reference = out.with_name(out.stem + "_truth.npy")
    np.save(reference, truth.astype(np.float32))
    return {"scan": out, "reference": reference, "times": centres,
            "angles_per_step": np.bincount(step, minlength=n_steps)[:n_steps], "z": z, "absorption": float(absorption)}
