"""Networks: shapes for any size, gradients, conditioning, config round trips, bad inputs, S4D correctness."""

import dataclasses
import json

import pytest
import torch

from steerdiff.core.nets import NETWORKS, S4DLayer, build_network

# small configs (fast) and an input-shape factory per network
SMALL = {
    "mlp": dict(dim=5, hidden=32, depth=2, emb_dim=16),
    "unet1d": dict(in_channels=3, base_channels=16, channel_mults=(1, 2, 2), emb_dim=16, groups=8),
    "unet2d": dict(
        in_channels=2,
        base_channels=16,
        channel_mults=(1, 2),
        num_res_blocks=1,
        attention_levels=(1,),
        num_heads=2,
        emb_dim=16,
        groups=8,
    ),
    "s4d": dict(in_channels=2, hidden_channels=16, num_blocks=2, d_state=8, emb_dim=16),
}
SHAPES = {
    "mlp": [(3, 5)],
    "unet1d": [(2, 3, 1), (2, 3, 7), (2, 3, 8), (2, 3, 33)],
    "unet2d": [(2, 2, 1, 1), (2, 2, 7, 5), (2, 2, 8, 8), (2, 2, 9, 12)],
    "s4d": [(2, 2, 1), (2, 2, 7), (2, 2, 33)],
}
NAMES = list(NETWORKS)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def make(name, **overrides):
    return build_network(name, **{**SMALL[name], **overrides})


def c_noise(batch):
    return torch.empty(batch).uniform_(-2.0, 1.5)


@pytest.mark.parametrize("name", NAMES)
def test_output_shape_equals_input_shape(name):
    net = make(name)
    for shape in SHAPES[name]:
        x = torch.randn(shape)
        out = net(x, c_noise(shape[0]))
        assert out.shape == x.shape and out.dtype == torch.float32
        assert torch.isfinite(out).all()


def test_unet2d_circular_any_size_and_torus_shift_equivariance():
    net = make("unet2d", padding_mode="circular").eval()
    for shape in [(2, 2, 1, 3), (2, 2, 7, 5)]:
        assert net(torch.randn(shape), c_noise(2)).shape == shape
    x, c = torch.randn(2, 2, 8, 12), c_noise(2)
    shift = net.multiple  # exact for shifts by multiples of 2**(levels-1)
    out_of_shifted = net(torch.roll(x, (shift, 2 * shift), dims=(-2, -1)), c)
    torch.testing.assert_close(out_of_shifted, torch.roll(net(x, c), (shift, 2 * shift), dims=(-2, -1)))


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_parameter(name):
    net = make(name, cond_dim=3)
    shape = SHAPES[name][-1]
    cond_mask = torch.arange(shape[0]) % 2 == 0  # mixed, so the null embedding is used too
    out = net(torch.randn(shape), c_noise(shape[0]), torch.randn(shape[0], 3), cond_mask)
    (out * torch.randn_like(out)).sum().backward()
    for pname, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().max() > 0, f"zero gradient for {pname}"


@pytest.mark.parametrize("name", NAMES)
def test_batch_items_are_independent(name):
    net = make(name).eval()
    x, c = torch.randn(SHAPES[name][-1]), c_noise(SHAPES[name][-1][0])
    torch.testing.assert_close(net(x, c)[1:2], net(x[1:2], c[1:2]), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_cond_mask_false_rows_equal_unconditional_rows(name):
    net = make(name, cond_dim=3).eval()
    shape = SHAPES[name][-1]
    b = shape[0]
    x, c, cond = torch.randn(shape), c_noise(b), torch.randn(b, 3)
    mask = torch.arange(b) % 2 == 0
    out_none, out_full = net(x, c), net(x, c, cond)
    cond_with_nan = torch.where(mask[:, None], cond, torch.full_like(cond, float("nan")))
    out_mixed = net(x, c, cond_with_nan, mask)  # dropped rows may hold anything
    torch.testing.assert_close(out_mixed[~mask], out_none[~mask])
    torch.testing.assert_close(out_mixed[mask], out_full[mask])
    assert not torch.allclose(out_full, out_none)  # the condition matters


@pytest.mark.parametrize("name", NAMES)
def test_build_network_round_trip_via_json(name):
    net = make(name, cond_dim=2, dropout=0.1).eval()
    saved = json.dumps({"name": net.name, "config": dataclasses.asdict(net.config)})
    loaded = json.loads(saved)
    net2 = build_network(loaded["name"], **loaded["config"]).eval()
    assert type(net2) is type(net) and net2.config == net.config and net.name == name
    net2.load_state_dict(net.state_dict())
    shape = SHAPES[name][-1]
    x, c, cond = torch.randn(shape), c_noise(shape[0]), torch.randn(shape[0], 2)
    assert torch.equal(net(x, c, cond), net2(x, c, cond))


def test_build_network_errors():
    with pytest.raises(ValueError, match=r"'nope'.*mlp"):
        build_network("nope", dim=2)
    with pytest.raises(ValueError, match="widht"):
        build_network("mlp", dim=2, widht=3)
    with pytest.raises(ValueError, match="in_channels"):
        build_network("unet1d")
    with pytest.raises(ValueError, match="kernel_size"):
        build_network("unet1d", in_channels=2, kernel_size=4)
    with pytest.raises(ValueError, match="num_heads"):
        build_network("unet2d", in_channels=1, base_channels=6, num_heads=5)
    with pytest.raises(ValueError, match="padding_mode"):
        build_network("unet2d", in_channels=1, padding_mode="reflect")
    with pytest.raises(ValueError, match="attention_levels"):
        build_network("unet2d", in_channels=1, channel_mults=(1, 2), attention_levels=(2,))


@pytest.mark.parametrize("name", NAMES)
def test_bad_inputs_raise_with_expected_and_received_shape(name):
    net = make(name, cond_dim=3)
    shape = SHAPES[name][-1]
    b = shape[0]
    x, c = torch.randn(shape), c_noise(b)
    wrong_channels = (b, shape[1] + 1, *shape[2:])
    with pytest.raises(ValueError, match=rf"\({b}, {shape[1] + 1}"):
        net(torch.randn(wrong_channels), c)
    with pytest.raises(ValueError, match="expects x of shape"):
        net(x[None], c)
    with pytest.raises(ValueError, match=rf"c_noise.*\({b},\).*\({b}, 1\)"):
        net(x, c[:, None])
    with pytest.raises(ValueError, match="c_noise"):
        net(x, c[0])
    with pytest.raises(ValueError, match="float"):
        net(x, torch.zeros(b, dtype=torch.long))
    with pytest.raises(ValueError, match=rf"cond.*\({b}, 3\).*\({b}, 4\)"):
        net(x, c, torch.randn(b, 4))
    with pytest.raises(ValueError, match="cond_mask"):
        net(x, c, torch.randn(b, 3), torch.ones(b))  # not bool
    with pytest.raises(ValueError, match="cond_mask"):
        net(x, c, torch.randn(b, 3), torch.ones(b + 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="without cond"):
        net(x, c, None, torch.ones(b, dtype=torch.bool))
    with pytest.raises(ValueError, match="cond_dim=0"):
        make(name)(x, c, torch.randn(b, 3))


# ---------------------------------------------------------------- S4D layer


def recurrent_ssm(layer: S4DLayer, u: torch.Tensor, direction: int = 0) -> torch.Tensor:
    """Step-by-step ZOH recurrence x_k = dA x_{k-1} + dB u_k, y_k = 2 Re(C x_k), without the D term."""
    A, dt = layer.A, layer.dt
    dA = torch.exp(dt[:, None] * A)
    dB = (dA - 1) / A
    C = torch.view_as_complex(layer.C)[direction]
    state = torch.zeros(u.shape[0], *A.shape, dtype=A.dtype)
    ys = []
    for k in range(u.shape[-1]):
        state = dA * state + dB * u[..., k, None]
        ys.append(2 * (C * state).sum(-1).real)
    return torch.stack(ys, dim=-1)


def test_s4d_fft_convolution_equals_recurrence():
    layer = S4DLayer(4, d_state=8, dt_min=0.05, dt_max=0.5).double()
    u = torch.randn(3, 4, 20, dtype=torch.float64)
    expected = recurrent_ssm(layer, u) + u * layer.D[:, None]
    torch.testing.assert_close(layer.ssm(u), expected, rtol=1e-9, atol=1e-9)
    # float32 path too, at float32 tolerance
    layer32 = S4DLayer(4, d_state=8, dt_min=0.05, dt_max=0.5)
    u32 = u.float()
    torch.testing.assert_close(
        layer32.ssm(u32), recurrent_ssm(layer32, u32) + u32 * layer32.D[:, None], rtol=1e-4, atol=1e-4
    )


def test_s4d_bidirectional_is_forward_plus_backward_recurrence():
    layer = S4DLayer(3, d_state=6, bidirectional=True, dt_min=0.05, dt_max=0.5).double()
    u = torch.randn(2, 3, 12, dtype=torch.float64)
    forward = recurrent_ssm(layer, u, 0)
    # anti-causal part: y_t = sum_{s > t} K1[s - t - 1] u_s, i.e. the backward recurrence shifted by one step
    backward = recurrent_ssm(layer, u.flip(-1), 1).flip(-1)
    backward = torch.nn.functional.pad(backward[..., 1:], (0, 1))
    torch.testing.assert_close(layer.ssm(u), forward + backward + u * layer.D[:, None], rtol=1e-9, atol=1e-9)


def test_s4d_unidirectional_layer_is_causal_and_bidirectional_is_not():
    u = torch.randn(2, 4, 16)
    u2 = u.clone()
    u2[..., 10:] = torch.randn(2, 4, 6)
    causal = S4DLayer(4, d_state=8)
    torch.testing.assert_close(causal(u)[..., :10], causal(u2)[..., :10], rtol=0, atol=1e-6)
    assert not torch.allclose(causal(u)[..., 10:], causal(u2)[..., 10:])
    both = S4DLayer(4, d_state=8, bidirectional=True)
    assert not torch.allclose(both(u)[..., :10], both(u2)[..., :10])


def test_s4d_layer_shapes_gradients_and_errors():
    layer = S4DLayer(5, d_state=4, bidirectional=True)
    for length in (1, 2, 9):
        u = torch.randn(2, 5, length, requires_grad=True)
        out = layer(u)
        assert out.shape == u.shape
    out.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().max() > 0 for p in layer.parameters())
    with pytest.raises(ValueError, match=r"\(B, 5, L\).*\(2, 4, 3\)"):
        layer(torch.randn(2, 4, 3))
    with pytest.raises(ValueError, match="even"):
        S4DLayer(5, d_state=3)


@pytest.mark.parametrize(
    "name, overrides",
    [
        ("mlp", dict(film=True, norm="none", noise_embedding="fourier")),
        ("unet1d", dict(activation="silu", channel_mults=(1,), kernel_size=3)),
        ("unet2d", dict(attention_levels=(), mid_attention=False, noise_embedding="fourier")),
        ("unet2d", dict(attention_levels=(0, -1), channel_mults=(1, 1, 2))),
        ("s4d", dict(bidirectional=False, init_skip=True, num_blocks=1)),
    ],
)
def test_config_variants_run_and_round_trip(name, overrides):
    net = make(name, **overrides).eval()
    net2 = build_network(net.name, **json.loads(json.dumps(dataclasses.asdict(net.config))))
    net2.load_state_dict(net.state_dict())
    x, c = torch.randn(SHAPES[name][-1]), c_noise(SHAPES[name][-1][0])
    out = net(x, c)
    assert out.shape == x.shape and torch.equal(out, net2.eval()(x, c))
