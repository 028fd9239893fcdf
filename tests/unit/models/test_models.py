"""Networks: registry, shapes at odd sizes, MS-D correctness and linear memory."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tomodenoise.models import available_models, build_model, model_defaults
from tomodenoise.models.msd import MSDNet

SMALL = {
    "msd": {"depth": 6},
    "unet": {"depth": 2, "base_channels": 4},
    "dncnn": {"depth": 4, "features": 8},
}


def test_registry_lists_the_three_networks():
    assert set(available_models()) >= {"msd", "unet", "dncnn"}
    assert set(SMALL) <= set(available_models())


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize("size", [(17, 23), (5, 7), (16, 16)])
def test_shapes_at_odd_sizes(name, size):
    torch.manual_seed(0)
    model = build_model(name, **SMALL[name]).eval()
    x = torch.randn(2, 1, *size)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", ["msd", "unet", "dncnn"])
def test_default_parameters_build_and_run(name):
    model = build_model(name).eval()
    with torch.no_grad():
        y = model(torch.randn(1, 1, 19, 21))
    assert y.shape == (1, 1, 19, 21)


def test_default_msd_is_paper_configuration():
    m = build_model("msd")
    assert m.depth == 100 and m.width == 1
    assert [d for _, d in m.units[:12]] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1, 2]
    assert m.final_weight.shape == (1, 101, 1, 1)


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError) as err:
        build_model("resnet")
    for name in ("msd", "unet", "dncnn"):
        assert name in str(err.value)


def test_unknown_parameter_lists_valid_parameters():
    with pytest.raises(ValueError) as err:
        build_model("msd", layers=3)
    msg = str(err.value)
    assert "layers" in msg and "depth" in msg and "width" in msg and "dilations" in msg
    assert "depth" in model_defaults("msd")


def test_bad_parameter_value_is_a_clear_error():
    with pytest.raises(ValueError, match="depth"):
        build_model("msd", depth=0)
    with pytest.raises(ValueError, match="padding_mode"):
        build_model("msd", padding_mode="circular")


def test_wrong_input_shape_is_rejected():
    with pytest.raises(ValueError, match="batch"):
        build_model("msd", depth=2)(torch.randn(1, 8, 8))


# --- MS-D: the buffer implementation equals a naive concatenation ------------------------------
def naive_msd(m: MSDNet, x: torch.Tensor) -> torch.Tensor:
    """Textbook MS-D: concatenate all previous maps at every layer (quadratic memory)."""
    h, w = x.shape[-2:]
    feats, k = x, 0
    for _ in range(m.depth):
        new = []
        for _ in range(m.width):
            _, d = m.units[k]
            if m.padding_mode == "reflect" and d < h and d < w:
                o = F.conv2d(F.pad(feats, (d, d, d, d), mode="reflect"), m.weights[k], m.biases[k], dilation=d)
            else:
                o = F.conv2d(feats, m.weights[k], m.biases[k], padding=d, dilation=d)
            new.append(F.relu(o))
            k += 1
        feats = torch.cat([feats, *new], dim=1)
    return F.conv2d(feats, m.final_weight, m.final_bias)


def _random_msd(**kw) -> MSDNet:
    torch.manual_seed(1)
    m = MSDNet(**kw).double()
    with torch.no_grad():  # defaults zero these; make every path matter
        m.final_weight.normal_()
        m.final_bias.normal_()
        for b in m.biases:
            b.normal_(0.0, 0.1)
    return m


@pytest.mark.parametrize("padding_mode", ["reflect", "zeros"])
@pytest.mark.parametrize("width", [1, 2])
def test_msd_equals_naive_concat_outputs_and_gradients(padding_mode, width):
    # depth 10 on 9x13: dilations 9 and 10 exercise the zero-padding fallback of "reflect".
    m = _random_msd(depth=10 // width, width=width, padding_mode=padding_mode)
    x = torch.randn(2, 1, 9, 13, dtype=torch.float64, requires_grad=True)
    params = [x, *m.parameters()]
    y1 = m(x)
    g1 = torch.autograd.grad((y1**2).sum() + y1.sum(), params)
    y2 = naive_msd(m, x)
    g2 = torch.autograd.grad((y2**2).sum() + y2.sum(), params)
    torch.testing.assert_close(y1, y2, rtol=1e-10, atol=1e-10)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_msd_gradcheck():
    m = _random_msd(depth=3, width=2, dilations=[1, 2, 3])
    x = torch.randn(1, 1, 6, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda inp: m(inp), (x,))


def test_msd_input_without_grad_and_no_grad_mode():
    m = _random_msd(depth=4)
    x = torch.randn(1, 1, 8, 8, dtype=torch.float64)
    m(x).sum().backward()
    assert all(p.grad is not None for p in m.parameters())
    with torch.no_grad():
        torch.testing.assert_close(m(x), naive_msd(m, x))


def test_msd_initialisation():
    torch.manual_seed(0)
    m = MSDNet(depth=30)
    w = m.weights[29]  # 30 input channels
    assert abs(float(w.detach().std()) - (2.0 / (9 * 30)) ** 0.5) < 0.03
    assert float(m.final_bias.detach().abs().sum()) == 0.0
    assert all(float(b.detach().abs().sum()) == 0.0 for b in m.biases)


# --- MS-D memory grows linearly with depth ----------------------------------------------------
def _saved_bytes(fn, m, x) -> int:
    """Bytes of distinct storages autograd keeps for backward."""
    seen: dict[int, int] = {}
    params = {p.untyped_storage().data_ptr() for p in m.parameters()}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in params:
            seen[s.data_ptr()] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = fn(m, x)
    del y
    return sum(seen.values())


def test_msd_saved_memory_is_linear_in_depth():
    x = torch.randn(2, 1, 32, 32)
    fast = {d: _saved_bytes(lambda m, v: m(v), MSDNet(depth=d), x) for d in (10, 20, 40)}
    naive = {d: _saved_bytes(naive_msd, MSDNet(depth=d), x) for d in (10, 20, 40)}
    one_map = 2 * 32 * 32 * 4
    # the buffer: (1 + depth) maps, nothing else
    assert fast[40] == (1 + 40) * one_map
    assert fast[40] / fast[20] < 2.1
    # the naive concatenation is quadratic: the check above would catch it
    assert naive[40] / naive[20] > 3.0


def test_msd_peak_memory_is_linear_in_depth():
    """Peak CPU allocation of a training step, from the profiler's allocation events."""
    profiler = pytest.importorskip("torch.profiler")

    def peak(depth: int) -> int:
        torch.manual_seed(0)
        m = MSDNet(depth=depth)
        x = torch.randn(2, 1, 32, 32)
        with profiler.profile(activities=[profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
            m(x).sum().backward()
        try:
            events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
            events.sort(key=lambda e: e.start_ns())
            cur = top = 0
            for e in events:
                cur += e.nbytes()
                top = max(top, cur)
        except AttributeError:  # profiler internals changed
            pytest.skip("profiler memory events not available in this torch version")
        if not events:
            pytest.skip("profiler recorded no memory events")
        return top

    p10, p20, p40 = peak(10), peak(20), peak(40)
    # linear: doubling depth roughly doubles the increment (quadratic would give ~4x)
    assert (p40 - p20) / max(p20 - p10, 1) < 2.6
