"""Phantoms with exact projections and the benchmark noise model.

- :mod:`~tomodenoise.simulate.foam`: the Noise2Inverse foam phantom (unit cylinder minus
  spherical voids) and its exact analytic parallel-beam projections.
- :mod:`~tomodenoise.simulate.noise`: the benchmark's Poisson noise model.
- :mod:`~tomodenoise.simulate.ellipses`: small random ellipse phantoms with exact
  sinograms, for fast tests of the whole pipeline.
"""

from tomodenoise.simulate.ellipses import ellipse_phantom, ellipse_sinogram, random_ellipses
from tomodenoise.simulate.foam import foam_slice, generate_foam, load_spheres, project_foam
from tomodenoise.simulate.noise import photon_counts, poisson_noise

__all__ = [
    "ellipse_phantom",
    "ellipse_sinogram",
    "foam_slice",
    "generate_foam",
    "load_spheres",
    "photon_counts",
    "poisson_noise",
    "project_foam",
    "random_ellipses",
]
