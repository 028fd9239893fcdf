"""Benchmarks on the foam of the original Noise2Inverse experiment, one experiment per file:

- :mod:`.foam`: quality of every method against the ground truth, with PSNR-against-time
  curves of the N2I networks (``tomodenoise bench foam``);
- :mod:`.reference`: our training loop against a reference-style loop (``bench reference``);
- :mod:`.warmstart`: warm start from another foam against a cold start (``bench warmstart``);
- :mod:`.profile`: where one training step's time goes (``bench profile``);
- :mod:`.modalities`: dynamic 4D and XRD-CT on simulated scans (``bench dynamic``, ``bench xrdct``);

over shared helpers: :mod:`.common` (geometry, cached simulation and reconstructions, scorer,
machine record), :mod:`.classical` (oracle-tuned filters), :mod:`.n2i` (training with a
curve), :mod:`.plots`.
"""

from .common import PUBLISHED, TARGET_MARGIN_DB, FoamData, FoamGeometry, default_phantom_path, prepare_foam
from .foam import ALL_METHODS, DEFAULT_METHODS, QUICK_TARGET, format_table, render_report, run_foam_benchmark
from .n2i import NetworkSetup, default_network_setups, time_to_reach, train_network
from .profile import run_profile
from .reference import run_reference_benchmark
from .warmstart import run_warmstart_benchmark

__all__ = [
    "ALL_METHODS",
    "DEFAULT_METHODS",
    "PUBLISHED",
    "QUICK_TARGET",
    "TARGET_MARGIN_DB",
    "FoamData",
    "FoamGeometry",
    "NetworkSetup",
    "default_network_setups",
    "default_phantom_path",
    "format_table",
    "prepare_foam",
    "render_report",
    "run_foam_benchmark",
    "run_profile",
    "run_reference_benchmark",
    "run_warmstart_benchmark",
    "time_to_reach",
    "train_network",
]
