"""The benchmark experiments of tomodenoise: a package of the repository, not installed with the library.

One way to run each: ``python -m benchmarks NAME [options]`` from the repository root
(``python -m benchmarks --help`` lists them, ``python -m benchmarks NAME --help`` gives the
options; :mod:`benchmarks.__main__` is the dispatcher). One module per benchmark, each with
``add_arguments(parser)`` and ``main(args)``:

- foam experiments (the original Noise2Inverse benchmark): :mod:`.foam` (quality of every
  method, PSNR-against-time curves), :mod:`.reference` (our training loop against a
  reference-style loop), :mod:`.warmstart` (warm start from another foam), :mod:`.step_profile`
  (``profile``: where one training step's time goes), :mod:`.compare` (every method of
  ``tomodenoise compare`` on a reduced foam, and the issue's checks);
- modalities: :mod:`.dynamic` (dynamic 4D) and :mod:`.xrdct` (XRD-CT) on simulated scans;
- real scans: :mod:`.real` (``run``'s defaults, the quality figures without ground truth);
- speed: :mod:`.inference` (sharded inference, slices/s), :mod:`.ddp` (DDP training),
  :mod:`.recon_scaling` (raw ASTRA against the reconstruct flow), :mod:`.preview_centre`
  (``tomodenoise preview`` on a big detector); and :mod:`.gaintuning_dose` (GainTuning at
  three doses).

Shared helpers: :mod:`.common` (geometry, cached simulation and reconstructions of the foam,
scorer, machine record), :mod:`.foam_baselines` (the oracle-tuned classical filters),
:mod:`.foam_report`, :mod:`.n2i` (training with a PSNR curve), :mod:`.plots`,
:mod:`.modalities`, :mod:`.recon_scaling_probes` and :mod:`.recon_scaling_report`. They use
the library (``tomodenoise``) and its public names only; the library never imports them.
Data paths beside the checkout (``../shared/data``) are defaults here, never in the library.

Tools that are not benchmarks stay scripts with one way to run them:
``benchmarks/real_scans/fetch_tomobank76.py`` (fetch a real scan),
``benchmarks/real_scans/calibrate_steps.py`` (calibrate the recipe's step count) and
``benchmarks/dask_worker_probe.py``. Their tests: ``pytest tests/benchmarks --benchmarks``.
"""
