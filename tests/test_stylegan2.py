"""StyleGAN2 building blocks, each checked by an exact identity in float64 on small shapes."""

import math

import pytest
import torch
import torch.nn.functional as F

from ganlab.errors import ConfigError
from ganlab.losses.stylegan2 import PathLengthPenalty, lazy_regularization_adam, path_lengths
from ganlab.networks import StyleGAN2Discriminator, StyleGAN2Generator
from ganlab.networks.stylegan2_layers import (
    EqualizedConv2d,
    EqualizedLinear,
    MinibatchStdLayer,
    ToRGB,
    conv2d_resample,
    downsample2d,
    fir_filter,
    modulated_conv2d,
    modulated_weight,
    normalize_2nd_moment,
    upfirdn2d,
    upsample2d,
)

f64 = torch.float64


def small_generator(**kwargs) -> StyleGAN2Generator:
    settings = dict(latent_dim=8, w_dim=8, channels=3, resolution=32, channel_base=64)
    settings.update(channel_max=8, mapping_layers=2)
    return StyleGAN2Generator(**{**settings, **kwargs}).to(f64)


def small_discriminator(**kwargs) -> StyleGAN2Discriminator:
    settings = dict(channels=3, resolution=32, channel_base=64, channel_max=8)
    settings.update(mbstd_group_size=2, mapping_layers=2)
    return StyleGAN2Discriminator(**{**settings, **kwargs}).to(f64)


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)


# Modulated convolution


def test_demodulated_weights_have_unit_norm_per_output_channel():
    weight, styles = torch.randn(5, 4, 3, 3, dtype=f64), torch.randn(3, 4, dtype=f64) * 3
    norms = modulated_weight(weight, styles).square().sum(dim=[2, 3, 4])  # (N, out)
    # sum of squares S / (S + 1e-8): one up to the demodulation epsilon
    torch.testing.assert_close(norms, torch.ones(3, 5, dtype=f64), rtol=0, atol=1e-9)


@pytest.mark.parametrize("fused", [True, False])
def test_modulated_conv_is_invariant_to_scaling_the_style(fused):
    x, weight = torch.randn(2, 4, 6, 6, dtype=f64), torch.randn(5, 4, 3, 3, dtype=f64)
    styles = torch.randn(2, 4, dtype=f64)
    out = modulated_conv2d(x, weight, styles, fused=fused)
    for scale in (0.25, 7.0):
        scaled = modulated_conv2d(x, weight, styles * scale, fused=fused)
        torch.testing.assert_close(scaled, out, rtol=1e-8, atol=1e-10)


def test_modulated_conv_is_a_per_sample_conv_with_the_modulated_weights():
    x, weight = torch.randn(3, 4, 6, 6, dtype=f64), torch.randn(5, 4, 3, 3, dtype=f64)
    styles = torch.randn(3, 4, dtype=f64)
    per_sample = modulated_weight(weight, styles)
    expected = torch.cat([F.conv2d(x[i : i + 1], per_sample[i], padding=1) for i in range(3)])
    torch.testing.assert_close(modulated_conv2d(x, weight, styles), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("demodulate", [True, False])
def test_fused_modconv_equals_non_fused(up, demodulate):
    x, weight = torch.randn(3, 4, 5, 5, dtype=f64), torch.randn(6, 4, 3, 3, dtype=f64)
    styles, noise = torch.randn(3, 4, dtype=f64), torch.randn(3, 1, 5 * up, 5 * up, dtype=f64)
    kwargs = dict(noise=noise, up=up, demodulate=demodulate)
    fused = modulated_conv2d(x, weight, styles, fused=True, **kwargs)
    non_fused = modulated_conv2d(x, weight, styles, fused=False, **kwargs)
    assert fused.shape == (3, 6, 5 * up, 5 * up)
    torch.testing.assert_close(fused, non_fused, rtol=0, atol=1e-10)


def test_generator_fused_and_non_fused_paths_agree():
    g = small_generator(resolution=16).eval()
    z = torch.randn(4, 8, dtype=f64)
    fused = g(z, noise_mode="const", fused=True)
    torch.testing.assert_close(g(z, noise_mode="const", fused=False), fused, rtol=0, atol=1e-10)


def test_torgb_does_not_demodulate_so_doubling_the_style_doubles_the_output():
    torgb = ToRGB(4, 3, w_dim=4).to(f64)
    x, styles = torch.randn(2, 4, 5, 5, dtype=f64), torch.randn(2, 4, dtype=f64)
    once = modulated_conv2d(x, torgb.weight, styles, demodulate=False)
    twice = modulated_conv2d(x, torgb.weight, 2 * styles, demodulate=False)
    torch.testing.assert_close(twice, 2 * once, rtol=0, atol=1e-12)
    # the layer's own styles are the affine output scaled by 1/sqrt(in_channels)
    w = torch.randn(2, 4, dtype=f64)
    styles = torgb.affine(w) / 2
    expected = modulated_conv2d(x, torgb.weight, styles, demodulate=False)
    torch.testing.assert_close(
        torgb(x, w), expected + torgb.bias[:, None, None], atol=1e-12, rtol=0
    )


def test_noise_modes_const_repeats_random_varies_none_drops_the_noise():
    g = small_generator(resolution=8).eval()
    z = torch.randn(2, 8, dtype=f64)
    without = g(z, noise_mode="none")
    assert torch.equal(g(z, noise_mode="const"), without)  # strengths start at 0
    with torch.no_grad():
        for name, parameter in g.named_parameters():
            if name.endswith("noise_strength"):
                parameter.fill_(1.0)
    assert torch.equal(g(z, noise_mode="none"), without)
    const = g(z, noise_mode="const")
    assert torch.equal(g(z, noise_mode="const"), const) and not torch.equal(const, without)
    assert not torch.equal(g(z, noise_mode="random"), g(z, noise_mode="random"))


def test_conv_clamp_bounds_the_activations():
    conv = EqualizedConv2d(3, 4, 3, activation="lrelu", conv_clamp=0.5).to(f64)
    out = conv(torch.randn(2, 3, 6, 6, dtype=f64) * 10)
    assert out.abs().max() == 0.5


# Resampling: the fast paths equal the official generic reference path


def test_upsampling_conv_equals_zero_insertion_filter_then_flipped_conv():
    x, w, f = torch.randn(2, 3, 5, 5, dtype=f64), torch.randn(4, 3, 3, 3, dtype=f64), fir_filter()
    reference = F.conv2d(upfirdn2d(x, f, up=2, padding=(3, 2, 3, 2), gain=4), w.flip([2, 3]))
    torch.testing.assert_close(conv2d_resample(x, w, f, up=2), reference, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kernel", [1, 3])
def test_downsampling_conv_equals_conv_then_filter_and_decimation(kernel):
    x, f = torch.randn(2, 3, 8, 8, dtype=f64), fir_filter()
    w = torch.randn(4, 3, kernel, kernel, dtype=f64)
    pad = kernel // 2 + 1
    reference = upfirdn2d(F.conv2d(F.pad(x, [pad] * 4), w), f, down=2)
    torch.testing.assert_close(conv2d_resample(x, w, f, down=2), reference, rtol=0, atol=1e-12)


def test_fir_resampling_keeps_constant_images_constant_away_from_the_border():
    f = fir_filter()
    assert f.sum().item() == 1.0
    image = torch.full((1, 1, 6, 6), 2.5, dtype=f64)
    up, down = upsample2d(image, f), downsample2d(image, f)
    assert up.shape[-1] == 12 and down.shape[-1] == 3
    torch.testing.assert_close(up[..., 2:-2, 2:-2], torch.full((1, 1, 8, 8), 2.5, dtype=f64))
    torch.testing.assert_close(down[..., 1:-1, 1:-1], torch.full((1, 1, 1, 1), 2.5, dtype=f64))


# Equalized learning rate


def test_equalized_linear_uses_the_scaled_weight_and_bias():
    layer = EqualizedLinear(16, 8, lr_multiplier=0.01, bias_init=1).to(f64)
    effective = layer.weight * 0.01 / 4
    assert torch.equal(layer.effective_weight(), effective)
    x = torch.randn(3, 16, dtype=f64)
    torch.testing.assert_close(layer(x), x @ effective.t() + 0.01, rtol=0, atol=1e-14)
    big = EqualizedLinear(400, 400, lr_multiplier=0.01)
    assert abs(big.effective_weight().std().item() - 1 / 20) < 1e-3  # 1/sqrt(in), any lr_mul


@pytest.mark.parametrize("in_features, lr_multiplier", [(4, 1.0), (64, 1.0), (64, 0.01)])
def test_one_adam_step_moves_the_effective_weight_by_lr_times_lr_multiplier(
    in_features, lr_multiplier
):
    layer = EqualizedLinear(in_features, 3, lr_multiplier=lr_multiplier).to(f64)
    before = layer.effective_weight().detach().clone()
    adam = torch.optim.Adam(layer.parameters(), lr=0.1, eps=1e-300)
    layer(torch.randn(5, in_features, dtype=f64)).square().sum().backward()
    adam.step()
    change = (layer.effective_weight().detach() - before).abs()
    expected = 0.1 * lr_multiplier / math.sqrt(in_features)  # relative change lr * lr_mul
    torch.testing.assert_close(change, torch.full_like(change, expected), rtol=1e-9, atol=0)


def test_equalized_conv_uses_the_scaled_weight():
    conv = EqualizedConv2d(3, 4, 3, activation="lrelu").to(f64)
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(2, 3, 6, 6, dtype=f64)
    effective = conv.weight / math.sqrt(3 * 9)
    expected = F.leaky_relu(F.conv2d(x, effective, conv.bias, padding=1), 0.2) * math.sqrt(2)
    torch.testing.assert_close(conv(x), expected, rtol=0, atol=1e-12)


def test_normalize_2nd_moment_gives_unit_mean_square_and_is_idempotent():
    x = torch.randn(4, 32, dtype=f64) * 5
    normalized = normalize_2nd_moment(x)
    torch.testing.assert_close(normalized.square().mean(dim=1), torch.ones(4, dtype=f64))
    torch.testing.assert_close(normalize_2nd_moment(normalized), normalized)


# Mapping network: w_avg and truncation


def test_w_avg_is_an_ema_of_the_batch_mean_w_updated_in_train_mode_only():
    g = small_generator()
    mapping = g.mapping
    with torch.no_grad():
        mapping.w_avg.normal_()
    z = torch.randn(6, 8, dtype=f64)
    before = mapping.w_avg.clone()
    w = mapping.eval()(z)[:, 0]
    assert torch.equal(mapping.w_avg, before)  # eval: no update
    mapping.train()(z)
    expected = before + (1 - 0.995) * (w.mean(dim=0) - before)
    torch.testing.assert_close(mapping.w_avg, expected, rtol=0, atol=1e-14)


def test_truncation_psi_0_gives_w_avg_and_psi_1_the_identity():
    g = small_generator()
    for _ in range(3):  # a non-trivial w_avg
        g.mapping(torch.randn(4, 8, dtype=f64))
    g.eval()
    z = torch.randn(5, 8, dtype=f64)
    ws = g.mapping(z)
    assert ws.shape == (5, g.num_ws, 8)
    assert torch.equal(g.mapping(z, truncation_psi=0), g.mapping.w_avg.expand_as(ws))
    assert torch.equal(g.mapping(z, truncation_psi=1), ws)
    cut = g.mapping(z, truncation_psi=0, truncation_cutoff=3)
    assert torch.equal(cut[:, :3], g.mapping.w_avg.expand(5, 3, 8))
    assert torch.equal(cut[:, 3:], ws[:, 3:])
    half = g.mapping(z, truncation_psi=0.5)
    torch.testing.assert_close(half, (ws + g.mapping.w_avg) / 2, rtol=0, atol=1e-14)


# Style mixing


def test_num_ws_is_two_log2_resolution_minus_two():
    assert small_generator().num_ws == 8
    assert small_generator(resolution=64).num_ws == 10
    assert small_generator(resolution=8).num_ws == 4


def test_style_mixing_at_crossover_num_ws_equals_no_mixing():
    g = small_generator().eval()
    z, other = torch.randn(3, 8, dtype=f64), torch.randn(3, 8, dtype=f64)
    plain = g(z, noise_mode="const")
    assert torch.equal(g(z, mix_z=other, mix_cutoff=g.num_ws, noise_mode="const"), plain)
    assert not torch.allclose(g(z, mix_z=other, mix_cutoff=3, noise_mode="const"), plain)


def test_style_mixing_takes_rows_from_the_cutoff_on_from_the_second_latent():
    g = small_generator().eval()
    z, other = torch.randn(3, 8, dtype=f64), torch.randn(3, 8, dtype=f64)
    mixed = g.styles(z, mix_z=other, mix_cutoff=torch.tensor(3))
    assert torch.equal(mixed[:, :3], g.styles(z)[:, :3])
    assert torch.equal(mixed[:, 3:], g.styles(other)[:, 3:])


def test_training_style_mixing_makes_two_row_groups_and_leaves_w_avg_to_the_first_latent():
    g = small_generator(style_mixing_prob=1.0).train()
    reference = small_generator().train()
    reference.load_state_dict(g.state_dict())
    z = torch.randn(4, 8, dtype=f64)
    for _ in range(5):
        ws = g.styles(z)
        distinct = torch.unique(ws[0], dim=0)
        assert len(distinct) == 2  # a cutoff in [1, num_ws - 1], every time at prob 1
        assert torch.equal(ws[:, 0], reference.styles(z)[:, 0])
    assert torch.equal(g.mapping.w_avg, reference.mapping.w_avg)


# Minibatch standard deviation


@pytest.mark.parametrize("batch, group, num_channels", [(6, 3, 1), (8, 4, 2), (3, 4, 1)])
def test_minibatch_stddev_equals_a_loop_over_groups(batch, group, num_channels):
    x = torch.randn(batch, 4, 3, 3, dtype=f64)
    out = MinibatchStdLayer(group, num_channels)(x)
    g = min(group, batch)
    assert out.shape == (batch, 4 + num_channels, 3, 3)
    assert torch.equal(out[:, :4], x)
    for i in range(batch):
        members = x[[j for j in range(batch) if j % (batch // g) == i % (batch // g)]]
        for part in range(num_channels):
            chunk = members[:, part * 4 // num_channels : (part + 1) * 4 // num_channels]
            variance = ((chunk - chunk.mean(dim=0)) ** 2).mean(dim=0)
            feature = (variance + 1e-8).sqrt().mean()
            expected = torch.full((3, 3), feature.item(), dtype=f64)
            torch.testing.assert_close(out[i, 4 + part], expected, rtol=0, atol=1e-14)


def test_minibatch_stddev_rejects_a_group_that_does_not_divide_the_batch():
    with pytest.raises(ConfigError, match=r"group size 4 must divide the batch size 6"):
        MinibatchStdLayer(4)(torch.randn(6, 2, 3, 3))
    with pytest.raises(ConfigError, match=r"num_channels=2 must divide the 3 feature channels"):
        MinibatchStdLayer(2, num_channels=2)(torch.randn(4, 3, 3, 3))


# Whole networks


@pytest.mark.parametrize("architecture", ["resnet", "orig"])
@pytest.mark.parametrize("num_classes", [None, 10])
def test_generator_and_discriminator_shapes_gradients_and_r1_double_backward(
    architecture, num_classes
):
    g = small_generator(num_classes=num_classes).train()
    d = small_discriminator(num_classes=num_classes, architecture=architecture).train()
    z = torch.randn(4, 8, dtype=f64)
    labels = None if num_classes is None else torch.tensor([0, 3, 3, 9])
    images = g(z, labels)
    assert images.shape == (4, 3, 32, 32)
    logits = d(images, labels)
    assert logits.shape == (4,)
    logits.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in g.parameters())
    # R1: the input gradient kept in the graph, then a backward through it reaches D's weights
    d.zero_grad()
    real = torch.randn(4, 3, 32, 32, dtype=f64, requires_grad=True)
    (grad,) = torch.autograd.grad(d(real, labels).sum(), real, create_graph=True)
    grad.square().sum().backward()
    grads = {name: p.grad for name, p in d.named_parameters()}
    assert all(torch.isfinite(grad).all() for grad in grads.values() if grad is not None)
    # Every weight gets an R1 gradient. Past minibatch stddev (the last smooth op) D is piecewise
    # linear in its biases, so there the input gradient does not depend on them.
    weights = [name for name in grads if name.endswith("weight")]
    assert all(grads[name] is not None and grads[name].abs().sum() > 0 for name in weights)


def test_discriminator_without_minibatch_stddev_takes_any_batch_size():
    d = small_discriminator(mbstd_num_channels=0, resolution=8)
    assert d(torch.randn(3, 3, 8, 8, dtype=f64)).shape == (3,)
    assert d.conv.weight.shape[1] == 8  # no extra stddev channel


def test_parameter_counts_match_the_official_cifar_spec():
    g = StyleGAN2Generator(mapping_layers=2)
    d = StyleGAN2Discriminator(architecture="orig", mbstd_group_size=32)
    # by shape count of the official networks (512 channels everywhere at 32x32)
    assert sum(p.numel() for p in g.parameters()) == 19_947_539
    assert sum(p.numel() for p in d.parameters()) == 20_720_641


# Generator regularization


def test_lazy_regularization_adam_rescale_gives_the_official_cifar_settings():
    lr, betas = lazy_regularization_adam(0.0025, (0.0, 0.99), 4)
    assert lr == pytest.approx(0.002) and betas[0] == 0.0
    assert betas[1] == pytest.approx(0.99 ** (4 / 5)) and round(betas[1], 5) == 0.99199
    lr, betas = lazy_regularization_adam(0.0025, (0.0, 0.99), 16)
    assert lr == pytest.approx(0.0025 * 16 / 17) and round(lr, 7) == 0.0023529
    assert round(betas[1], 5) == 0.99059
    assert lazy_regularization_adam(0.0025, (0.5, 0.99), None) == (0.0025, (0.5, 0.99))


@pytest.mark.parametrize("interval", [0, -3, 2.5, True])
def test_lazy_regularization_adam_rejects_a_bad_interval(interval):
    with pytest.raises(ConfigError, match=r"interval=.* must be null or an integer >= 1"):
        lazy_regularization_adam(0.001, (0.0, 0.99), interval)


def linear_generator(a: torch.Tensor, ws: torch.Tensor) -> torch.Tensor:
    """images (N, 1, 4, 4) = sum over rows of A w_row: a linear G for the path-length checks."""
    return torch.einsum("pd,nrd->np", a, ws).reshape(-1, 1, 4, 4)


def test_path_length_of_a_linear_generator_is_its_closed_form_and_independent_of_w():
    a = torch.randn(16, 5, dtype=f64)
    noise = torch.randn(3, 1, 4, 4, dtype=f64)
    lengths = []
    for _ in range(2):
        ws = torch.randn(3, 2, 5, dtype=f64, requires_grad=True)
        lengths.append(path_lengths(linear_generator(a, ws), ws, noise))
    expected = (noise.reshape(3, 16) @ a).norm(dim=1)  # A^T y, the same for every row
    torch.testing.assert_close(lengths[0], expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(lengths[1], expected, rtol=0, atol=1e-12)


def test_pl_mean_is_an_ema_with_decay_0_01_and_the_penalty_trains_g():
    penalty = PathLengthPenalty().to(f64)
    a = torch.randn(16, 5, dtype=f64, requires_grad=True)
    noise = torch.randn(3, 1, 4, 4, dtype=f64)
    length = (noise.reshape(3, 16) @ a.detach()).norm(dim=1)
    for n in range(1, 6):
        ws = torch.randn(3, 2, 5, dtype=f64, requires_grad=True)
        value = penalty(linear_generator(a, ws), ws, noise)
        mean = length.mean() * (1 - 0.99**n)
        torch.testing.assert_close(penalty.pl_mean, mean, rtol=1e-12, atol=0)
        torch.testing.assert_close(value, (length - mean) ** 2, rtol=1e-12, atol=0)
    value.sum().backward()
    assert a.grad is not None and a.grad.abs().sum() > 0
    assert "pl_mean" in penalty.state_dict()


# Clear errors for bad settings


@pytest.mark.parametrize("resolution", [4, 48, 0])
def test_unsupported_resolution_is_a_clear_error(resolution):
    with pytest.raises(ConfigError, match=rf"resolution={resolution} .*power of two >= 8"):
        small_generator(resolution=resolution)
    with pytest.raises(ConfigError, match=rf"resolution={resolution} .*power of two >= 8"):
        small_discriminator(resolution=resolution)


def test_bad_settings_are_clear_errors():
    with pytest.raises(ConfigError, match=r"architecture='skip' .*accepted: \('resnet', 'orig'\)"):
        small_discriminator(architecture="skip")
    with pytest.raises(ConfigError, match=r"noise_mode='fixed' .*accepted: \('random'"):
        small_generator()(torch.randn(2, 8, dtype=f64), noise_mode="fixed")
    with pytest.raises(ConfigError, match=r"style_mixing_prob=1.5 must be in \[0, 1\]"):
        small_generator(style_mixing_prob=1.5)
    with pytest.raises(ConfigError, match=r"num_classes=-1 must be null or an integer >= 0"):
        small_generator(num_classes=-1)
    with pytest.raises(ConfigError, match=r"activation='relu' .*accepted: \('linear', 'lrelu'\)"):
        EqualizedLinear(2, 2, activation="relu")
    with pytest.raises(ConfigError, match=r"group_size=0, num_channels=1: both must be"):
        MinibatchStdLayer(0)
    with pytest.raises(ConfigError, match=r"decay=0 must be in \(0, 1\]"):
        PathLengthPenalty(decay=0)


def test_conditional_networks_without_labels_are_a_clear_error():
    with pytest.raises(ConfigError, match=r"conditional StyleGAN2 .*num_classes=10.* needs labels"):
        small_generator(num_classes=10)(torch.randn(2, 8, dtype=f64))
    d = small_discriminator(num_classes=10)
    with pytest.raises(ConfigError, match=r"num_classes=10.* needs labels"):
        d(torch.randn(2, 3, 32, 32, dtype=f64))
