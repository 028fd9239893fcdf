"""One device resolution for training and inference (tomodenoise.device.resolve_device)."""

import pytest
import torch

from tomodenoise.device import resolve_device
from tomodenoise.pipeline.inference.block import device_for
from tomodenoise.train.launch import resolve_ranks


def test_auto_is_the_cpu_without_cuda_and_a_cuda_request_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu") and device_for("auto") == "cpu"
    assert resolve_device("cpu") == torch.device("cpu") and device_for("cpu") == "cpu"
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    for name in ("cuda", "cuda:1"):  # training, inference and the ranks say the same
        for resolve in (resolve_device, device_for, lambda n: resolve_ranks(2, n)):
            with pytest.raises(ValueError, match="no CUDA GPU"):
                resolve(name)


def test_auto_is_cuda_with_a_gpu_and_a_missing_index_is_named(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == torch.device("cuda") and device_for("auto") == "cuda"
    assert device_for("cuda:0") == "cuda:0"
    with pytest.raises(ValueError, match="only 1 CUDA GPU"):
        device_for("cuda:1")


def test_training_and_inference_take_the_same_precision(monkeypatch):
    from tomodenoise.device import resolve_precision
    from tomodenoise.train.distributed import speedups

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for bf16_ok in (True, False):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_ok)
        for dev in ("cpu", "cuda"):
            for p in ("auto", "fp32", "bf16"):
                fast = speedups(torch.device(dev), p)
                assert (fast.autocast is torch.bfloat16) == (resolve_precision(p, dev) == "bf16")
                assert fast.channels_last == (dev == "cuda")
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16", "cpu")
