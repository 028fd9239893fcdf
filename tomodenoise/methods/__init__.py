"""Comparison methods: classical baselines, self-supervised and supervised networks, SBD and
GainTuning, judged alike (PSNR/SSIM when a clean reference exists, uPSNR always).

One module per method, registered by name in :mod:`.registry`; :mod:`.base` holds what every
method gets (:class:`Scan`, :class:`Context`) and gives back (:class:`MethodResult`);
:mod:`.training` the small loop the learned methods share; :mod:`.compare` runs several on one
scan and writes the table and the panel.
"""

from .base import Context, MethodConfig, MethodResult, Scan
from .registry import METHODS, available_methods, get_method_class, parse_method, parse_methods

__all__ = ["METHODS", "Context", "MethodConfig", "MethodResult", "Scan", "available_methods",
           "get_method_class", "parse_method", "parse_methods"]
