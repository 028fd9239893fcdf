"""Quality without ground truth: the held-out N2I loss of the network against the input and a tuned
Gaussian filter, three figures of the volume (contrast, edges, noise removed) and the verdict."""

from .check import THRESHOLDS, quality_verdict
from .figures import QualityFigures, quality_figures
from .gaussian import gaussian_slices, tune_gaussian
from .heldout import fov_disk, heldout_losses

__all__ = ["THRESHOLDS", "QualityFigures", "fov_disk", "gaussian_slices", "heldout_losses", "quality_figures",
           "quality_verdict", "tune_gaussian"]
