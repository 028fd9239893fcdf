"""tomodenoise: self-supervised deep denoising (Noise2Inverse) for synchrotron tomography."""

__version__ = "0.1.0"
