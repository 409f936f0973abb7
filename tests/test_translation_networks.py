"""Image-to-image networks: official parameter counts, shapes, the PatchGAN receptive field
measured by gradients, U-Net skips, and refused sizes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ganlab.networks import (
    GatedInpaintingGenerator,
    MSRResNet,
    PatchGANDiscriminator,
    ResNetTranslator,
    RRDBNet,
    UnetGenerator,
    patchgan_receptive_field,
)


def num_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# Official widths; counts as in the research note (rounded there to the digits given here).
@pytest.mark.parametrize(
    ("build", "millions", "digits"),
    [
        (lambda: UnetGenerator(num_downs=8, norm="batch"), 54.41, 2),  # unet_256
        (lambda: UnetGenerator(num_downs=7), 41.83, 2),  # unet_128
        (lambda: UnetGenerator(num_downs=6), 29.24, 2),  # 64x64
        (lambda: PatchGANDiscriminator(channels=6, norm="batch"), 2.77, 2),  # pix2pix D
        (lambda: PatchGANDiscriminator(channels=3, norm="instance"), 2.765, 3),  # CycleGAN D
        (lambda: ResNetTranslator(n_blocks=9), 11.378, 3),  # resnet_9blocks
        (lambda: ResNetTranslator(n_blocks=6), 7.84, 2),  # resnet_6blocks
        (lambda: MSRResNet(), 1.52, 2),
        (lambda: RRDBNet(num_blocks=23), 16.70, 2),
    ],
)
def test_parameter_counts_match_the_official_architectures(build, millions, digits):
    assert round(num_params(build()) / 1e6, digits) == millions


def test_patchgan_init_is_normal_0_02():
    convs = [m for m in PatchGANDiscriminator(channels=6).modules() if isinstance(m, nn.Conv2d)]
    conv = convs[-2]  # the 256 -> 512 stride-1 conv: enough weights for a tight std estimate
    assert conv.weight.shape[:2] == (512, 256)
    assert abs(conv.weight.std().item() - 0.02) < 1e-3 and abs(conv.weight.mean().item()) < 1e-3


def test_patchgan_receptive_field_values():
    assert [patchgan_receptive_field(n) for n in range(1, 6)] == [16, 34, 70, 142, 286]


@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_patchgan_receptive_field_measured_by_gradient(n_layers):
    torch.manual_seed(0)
    field = patchgan_receptive_field(n_layers)
    d = PatchGANDiscriminator(channels=3, base_width=4, n_layers=n_layers).eval()
    image = torch.randn(1, 3, 2 * field, 2 * field, requires_grad=True)
    logits = d(image)
    h, w = logits.shape[-2:]
    logits[0, 0, h // 2, w // 2].backward()
    touched = image.grad[0].abs().sum(0) > 0
    rows = touched.any(1).nonzero().flatten()
    cols = touched.any(0).nonzero().flatten()
    assert rows[-1] - rows[0] + 1 == field and cols[-1] - cols[0] + 1 == field
    window = touched[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    assert window.all()  # non-zero on the whole window and nowhere else
    assert touched.sum() == field * field


def test_patchgan_output_map_and_too_small_input():
    d = PatchGANDiscriminator(channels=6, base_width=8)
    assert d(torch.randn(2, 6, 64, 64)).shape == (2, 1, 6, 6)
    with pytest.raises(ValueError, match=r"n_layers=3\) input \(16, 16\) is too small.*>= 24"):
        d(torch.randn(1, 6, 16, 16))


def test_unet_shapes_range_and_dropout_blocks():
    torch.manual_seed(0)
    g = UnetGenerator(channels=3, out_channels=3, num_downs=6, base_width=4)
    out = g(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 3, 64, 64) and out.abs().max() <= 1
    # num_downs - 5 inner dropout blocks: 3 for unet_256
    big = UnetGenerator(num_downs=8, base_width=1)
    assert sum(isinstance(m, nn.Dropout) for m in big.modules()) == 3
    no_bias = [m.bias for m in big.modules() if isinstance(m, nn.Conv2d)][1:]
    assert all(b is None for b in no_bias)  # BatchNorm: the inner convs drop their bias
    inst = UnetGenerator(num_downs=5, base_width=1, norm="instance")
    assert all(m.bias is not None for m in inst.modules() if isinstance(m, nn.Conv2d))


def test_unet_output_reaches_the_input_through_the_skips():
    torch.manual_seed(0)
    g = UnetGenerator(num_downs=5, base_width=4, dropout=False).eval()
    # outermost -> (w, 2w) -> (2w, 4w) -> (4w, 8w) -> innermost; each block's inner one at [1]/[3]
    innermost = g.model.model[1].model[3].model[3].model[3]
    down_conv = innermost.model[1]
    nn.init.zeros_(down_conv.weight)  # the 1x1 bottleneck now carries nothing
    assert down_conv.weight.shape[-2:] == (4, 4) and down_conv.in_channels == 4 * 8
    image = torch.randn(1, 3, 32, 32, requires_grad=True)
    g(image)[0, :, 16, 16].sum().backward()
    assert image.grad[0, :, 16, 16].abs().sum() > 0
    assert image.grad[0, :, 15:18, 15:18].abs().sum() > image.grad[0, :, :4, :4].abs().sum()


@pytest.mark.parametrize(
    ("build", "size", "works"),
    [
        (lambda: UnetGenerator(num_downs=6, base_width=2), 48, "divisible by 64; got 48x48"),
        (lambda: ResNetTranslator(base_width=2, n_blocks=1), 30, "divisible by 4; got 30x30"),
    ],
)
def test_bad_sizes_are_refused_with_the_sizes_that_work(build, size, works):
    with pytest.raises(ValueError, match=works):
        build()(torch.randn(1, 3, size, size))


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match=r"norm='group' is not supported; accepted: \('batch'"):
        UnetGenerator(num_downs=5, base_width=1, norm="group")
    with pytest.raises(ValueError, match=r"num_downs=4 is too small; accepted: >= 5"):
        UnetGenerator(num_downs=4)
    with pytest.raises(ValueError, match=r"n_layers=0 is not supported; accepted: >= 1"):
        PatchGANDiscriminator(n_layers=0)
    with pytest.raises(ValueError, match=r"MSRResNet scale=3 is not supported; accepted: \(2, 4\)"):
        MSRResNet(scale=3)
    with pytest.raises(ValueError, match=r"RRDBNet scale=8 is not supported; accepted: \(2, 4\)"):
        RRDBNet(scale=8)


def test_resnet_translator_shapes_reflect_padding_and_instance_norm():
    g = ResNetTranslator(base_width=4, n_blocks=2, dropout=True)
    out = g(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 3, 32, 32) and out.abs().max() <= 1
    norms = [m for m in g.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert norms and not any(m.affine or m.track_running_stats for m in norms)
    assert sum(isinstance(m, nn.ReflectionPad2d) for m in g.modules()) == 2 + 2 * 2
    assert sum(isinstance(m, nn.Dropout) for m in g.modules()) == 2


@pytest.mark.parametrize("scale", [2, 4])
def test_sr_networks_upscale(scale):
    lr = torch.rand(2, 3, 8, 8) * 2 - 1
    for net in (
        MSRResNet(base_width=8, num_blocks=2, scale=scale),
        RRDBNet(base_width=8, num_blocks=1, growth=4, scale=scale),
    ):
        out = net(lr)
        assert out.shape == (2, 3, 8 * scale, 8 * scale) and torch.isfinite(out).all()
        assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())


def test_msrresnet_global_skip_is_the_bilinear_upsampled_input():
    net = MSRResNet(base_width=8, num_blocks=2, scale=4)
    nn.init.zeros_(net.conv_last.weight)
    nn.init.zeros_(net.conv_last.bias)
    lr = torch.rand(1, 3, 8, 8)
    expected = F.interpolate(lr, scale_factor=4, mode="bilinear", align_corners=False)
    torch.testing.assert_close(net(lr), expected)


def hole_batch() -> tuple[torch.Tensor, torch.Tensor]:
    image = torch.rand(2, 3, 16, 16) * 2 - 1
    mask = torch.zeros(2, 1, 16, 16)
    mask[..., 4:12, 4:12] = 1
    return image, mask


def test_inpainting_composites_known_pixels_and_fills_the_hole_from_context():
    torch.manual_seed(0)
    image, mask = hole_batch()
    image.requires_grad_(True)
    out = GatedInpaintingGenerator(base_width=8)(image, mask)
    assert out.shape == image.shape and out.abs().max() <= 1
    torch.testing.assert_close(out * (1 - mask), image * (1 - mask))
    out[:, :, 8, 8].sum().backward()  # a hole pixel depends on the known pixels only
    assert image.grad[:, :, 0:4].abs().sum() > 0
    assert image.grad[:, :, 4:12, 4:12].abs().sum() == 0


def test_inpainting_without_composite_predicts_every_pixel():
    torch.manual_seed(0)
    image, mask = hole_batch()
    out = GatedInpaintingGenerator(base_width=8, composite=False)(image, mask)
    assert out.shape == image.shape and out.abs().max() <= 1
    assert not torch.allclose(out * (1 - mask), image * (1 - mask))


def test_inpainting_refuses_a_mismatched_mask_and_a_bad_size():
    g = GatedInpaintingGenerator(base_width=4)
    image, mask = hole_batch()
    with pytest.raises(ValueError, match=r"mask shape \(2, 1, 8, 8\) .* expected \(2, 1, 16, 16\)"):
        g(image, mask[..., :8, :8])
    with pytest.raises(ValueError, match="divisible by 4; got 18x18"):
        g(torch.randn(1, 3, 18, 18), torch.zeros(1, 1, 18, 18))
