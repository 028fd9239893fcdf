"""Denoising networks (pure PyTorch), built by name: ``build_model("msd", depth=100)``."""

from tomodenoise.models.registry import (
    MODELS,
    available_models,
    build_model,
    get_model_class,
    model_defaults,
)

__all__ = ["MODELS", "available_models", "build_model", "get_model_class", "model_defaults"]
