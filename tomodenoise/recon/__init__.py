"""Tomographic reconstruction (FBP, SIRT) and forward projection through ASTRA.

Geometry and orientation convention
-----------------------------------
Parallel beam, 2D per detector row (slices along ``z`` are independent). All lengths
are in detector pixels (voxel size = detector pixel size = 1) unless a
``pixel_size`` is passed.

* Reconstruction pixel ``rec[..., i, j]`` of an ``n x n`` grid is centred at
  ``x = j - (n - 1) / 2`` and ``y = (n - 1) / 2 - i``: ``x`` grows with the column
  index, ``y`` points *up* (it grows as the row index decreases), the rotation axis is
  at ``x = y = 0``, the middle of the grid. This is ASTRA's native 2D convention and
  the "image display" convention (``imshow`` shows the +y axis upwards).
* Sinogram entry ``sino[..., a, c]`` is the line integral along the line
  ``x cos(theta_a) + y sin(theta_a) = u`` with ``u = c - center`` (``center`` is the
  0-based detector column of the rotation axis, default ``(W - 1) / 2``). At
  ``theta = 0`` the detector axis ``u`` is parallel to ``x`` (rays travel along ``y``);
  at ``theta = pi / 2`` it is parallel to ``y``. :func:`tomodenoise.simulate.foam.project_foam`
  and :func:`tomodenoise.simulate.ellipses.ellipse_sinogram` use the same convention,
  so their FBPs show the phantoms upright and unflipped in this frame.
* This reproduces ASTRA's own FBP of the reference data set ``nabu_fbp``
  (``mri_sino500.npz`` -> ``mri_rec_astra.npz``) without any flip or transpose.

Scale
-----
A sinogram of line integrals in pixel units reconstructs to attenuation per pixel:
a uniform disk of attenuation 1 gives 1. FBP weights every projection by
``pi / n_angles`` (what ASTRA does for parallel beam, verified in the unit tests), so
every call is on the same scale whatever the number of angles and, for interlaced
splits of equal size, ``mean_j fbp(split_j) == fbp(all)`` to float precision. With
``pixel_size`` given, the sinogram is taken to be in physical length units times
attenuation and the result is divided by ``pixel_size`` (attenuation per physical
unit).

Centre of rotation
------------------
ASTRA's CPU FBP supports only the plain ``parallel`` geometry (rotation axis in the
middle of the detector), so the sinogram is re-centred before reconstruction: it is
padded on one side (edge values, no data lost) by the integer number of columns that
brings the axis to the middle of the widened detector, and any residual shift (at most
a quarter pixel; zero for integer and half-integer centres) is applied with cubic
spline interpolation. The reconstruction grid (default ``n = W``, the original width)
is centred on the rotation axis.

GPU
---
CUDA algorithms (``FBP_CUDA``, ``SIRT_CUDA``, ``FP_CUDA``) are used only when
``astra.use_cuda()`` is True and ``use_gpu`` is not ``"no"``. A CUDA call of ASTRA on a
machine without a GPU kills the process, so this is checked before every call.

The package, one job per module: :mod:`.checks` (input validation, filter names),
:mod:`.gpu` (ASTRA, CUDA or not), :mod:`.centre` (re-centring on the rotation axis),
:mod:`.astra2d` (:class:`SliceReconstructor`: one ASTRA set-up run on many slices),
:mod:`.algorithms` (:func:`fbp`, :func:`sirt` and their reusable set-ups),
:mod:`.project` (:func:`forward_project`), :mod:`.split_recon` (:func:`reconstruct_splits`).
"""

from __future__ import annotations

from .algorithms import fbp, fbp_reconstructor, sirt, sirt_reconstructor
from .astra2d import SliceReconstructor
from .checks import ASTRA_FILTERS
from .gpu import gpu_available
from .project import forward_project
from .split_recon import reconstruct_splits

__all__ = [
    "ASTRA_FILTERS",
    "SliceReconstructor",
    "fbp",
    "fbp_reconstructor",
    "forward_project",
    "gpu_available",
    "reconstruct_splits",
    "sirt",
    "sirt_reconstructor",
]
