"""StyleGAN2 layers in plain PyTorch ops (Karras et al., 2020; NVlabs/stylegan2-ada-pytorch).

The official `upfirdn2d` and `bias_act` CUDA ops are replaced by their reference semantics:
- Resampling uses the FIR filter [1, 3, 3, 1], as its 4x4 outer product normalized to sum 1.
  Upsampling by 2 inserts zeros after every pixel, pads (2, 1) per side and convolves with that
  filter times 4; downsampling by 2 pads (1, 1), convolves and keeps every second pixel. A conv
  with `up=2` is a stride-2 transposed conv followed by the filter, a conv with `down=2` is the
  filter followed by a stride-2 conv (1x1 convs: filter first, then the conv), exactly as
  `conv2d_resample` of the official code, so the output sizes and the pixel alignment match.
- An activation is leaky ReLU(0.2) times sqrt(2) (the official `def_gain`) or linear (gain 1),
  applied after the bias, then optionally clamped to [-conv_clamp, conv_clamp].
Besides the generic layers, the generator's own: SynthesisLayer (modulated conv, noise input)
and ToRGB.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ganlab.errors import ConfigError

ACTIVATIONS = ("linear", "lrelu")
LRELU_GAIN = math.sqrt(2)


def fir_filter(taps: tuple[float, ...] = (1, 3, 3, 1)) -> torch.Tensor:
    """The 2D resampling filter: the outer product of `taps`, normalized to sum 1."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    f = torch.outer(f, f)
    return f / f.sum()


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor,
    up: int = 1,
    down: int = 1,
    padding: tuple[int, int, int, int] = (0, 0, 0, 0),  # (left, right, top, bottom), >= 0
    gain: float = 1.0,
) -> torch.Tensor:
    """Upsample by zero insertion, pad, convolve each channel with `f * gain`, keep every
    `down`-th pixel: the official op's reference path (the filter is symmetric, so no flip)."""
    n, c, h, w = x.shape
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    x = F.pad(x, list(padding))
    kernel = (f * gain).to(x.dtype)[None, None].repeat(c, 1, 1, 1)
    x = F.conv2d(x, kernel, groups=c)
    return x[:, :, ::down, ::down]


def upsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """x2 upsampling with the FIR filter (the skip generator's image path)."""
    taps = f.shape[-1]
    pad = ((taps + 1) // 2, (taps - 2) // 2)
    return upfirdn2d(x, f, up=2, padding=(*pad, *pad), gain=4)


def downsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """/2 downsampling with the FIR filter."""
    taps = f.shape[-1]
    pad = ((taps - 1) // 2, (taps - 2) // 2)
    return upfirdn2d(x, f, down=2, padding=(*pad, *pad))


def conv2d_resample(
    x: torch.Tensor,
    w: torch.Tensor,  # (out, in/groups, k, k)
    f: torch.Tensor,
    up: int = 1,
    down: int = 1,
    groups: int = 1,
) -> torch.Tensor:
    """A 'same' conv (padding k//2) with optional x2 up- or /2 downsampling through `f`."""
    k = w.shape[-1]
    pad = k // 2
    taps = f.shape[-1]
    if up == 1 and down == 1:
        return F.conv2d(x, w, padding=pad, groups=groups)
    if down == 2 and up == 1:
        p0, p1 = pad + (taps - 1) // 2, pad + (taps - 2) // 2
        if k == 1:
            return F.conv2d(upfirdn2d(x, f, down=2, padding=(p0, p1, p0, p1)), w, groups=groups)
        return F.conv2d(upfirdn2d(x, f, padding=(p0, p1, p0, p1)), w, stride=2, groups=groups)
    if up == 2 and down == 1 and k > 1:
        out_channels, in_per_group = w.shape[0], w.shape[1]
        # conv_transpose2d wants (in, out/groups, k, k) per group.
        w = w.reshape(groups, out_channels // groups, in_per_group, k, k).transpose(1, 2)
        w = w.reshape(groups * in_per_group, out_channels // groups, k, k)
        p0 = pad + (taps + 1) // 2 - (k - 1)
        p1 = pad + (taps - 2) // 2 - (k - 2)
        x = F.conv_transpose2d(x, w, stride=2, groups=groups)
        return upfirdn2d(x, f, padding=(p0, p1, p0, p1), gain=4)
    raise ConfigError(f"conv with up={up}, down={down}, kernel {k} is not supported")


def bias_act(
    x: torch.Tensor,
    bias: torch.Tensor | None,
    activation: str = "linear",
    gain: float = 1.0,  # multiplies the activation's own gain (sqrt(2) for lrelu)
    clamp: float | None = None,
) -> torch.Tensor:
    """Add the bias (over dim 1), apply the activation with its gain, clamp."""
    if bias is not None:
        x = x + bias.to(x.dtype).reshape([1, -1] + [1] * (x.dim() - 2))
    if activation == "lrelu":
        x = F.leaky_relu(x, 0.2)
        gain = gain * LRELU_GAIN
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def _check_activation(activation: str) -> str:
    if activation not in ACTIVATIONS:
        raise ConfigError(f"activation={activation!r} is not supported; accepted: {ACTIVATIONS}")
    return activation


class EqualizedLinear(nn.Module):
    """Fully connected layer with equalized learning rate: the stored weight is N(0, 1/lr_mul^2)
    and the layer uses weight * lr_mul / sqrt(in_features) (and bias * lr_mul), so every layer
    learns at the same relative speed, lr_multiplier times the optimizer's."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        activation: str = "linear",  # 'linear' or 'lrelu'
        lr_multiplier: float = 1.0,  # relative learning rate (the mapping network's 0.01)
        bias_init: float = 0.0,  # the style affines start at 1
    ):
        super().__init__()
        self.activation = _check_activation(activation)
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def effective_weight(self) -> torch.Tensor:
        return self.weight * self.weight_gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias * self.bias_gain
        x = x.matmul(self.effective_weight().to(x.dtype).t())
        return bias_act(x, bias, self.activation)


class EqualizedConv2d(nn.Module):
    """Conv with equalized learning rate (weight * 1/sqrt(in * k^2) at runtime), 'same' padding,
    optional FIR up/downsampling, bias and activation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        bias: bool = True,
        activation: str = "linear",  # 'linear' or 'lrelu'
        up: int = 1,  # 2: upsample x2 before the conv (transposed conv + filter)
        down: int = 1,  # 2: downsample /2 (filter + strided conv)
        conv_clamp: float | None = None,  # clamp outputs to +-conv_clamp (None: off)
    ):
        super().__init__()
        self.activation = _check_activation(activation)
        self.up, self.down, self.conv_clamp = up, down, conv_clamp
        self.register_buffer("resample_filter", fir_filter(), persistent=False)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)

    def effective_weight(self) -> torch.Tensor:
        return self.weight * self.weight_gain

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        w = self.effective_weight().to(x.dtype)
        x = conv2d_resample(x, w, self.resample_filter, up=self.up, down=self.down)
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        return bias_act(x, self.bias, self.activation, gain=gain, clamp=clamp)


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """x / sqrt(mean(x^2) + eps) along `dim` (the pixel norm of z and of the label embedding)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def demodulation_coefficients(weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """(N, out): 1 / sqrt(sum_{i,k} (s_ni w_oik)^2 + 1e-8), the inverse norm of each sample's
    modulated weight per output channel."""
    modulated = weight.unsqueeze(0) * styles.reshape(styles.shape[0], 1, -1, 1, 1)
    return (modulated.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()


def modulated_weight(weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True):
    """Each sample's conv weight (N, out, in, k, k): w * s per input channel, times the
    demodulation coefficient per output channel when `demodulate`."""
    modulated = weight.unsqueeze(0) * styles.reshape(styles.shape[0], 1, -1, 1, 1)
    if not demodulate:
        return modulated
    return modulated * demodulation_coefficients(weight, styles)[:, :, None, None, None]


def modulated_conv2d(
    x: torch.Tensor,  # (N, in, H, W)
    weight: torch.Tensor,  # (out, in, k, k), the stored weight
    styles: torch.Tensor,  # (N, in)
    noise: torch.Tensor | None = None,  # added after demodulation
    up: int = 1,
    demodulate: bool = True,
    fused: bool = True,
    resample_filter: torch.Tensor | None = None,
) -> torch.Tensor:
    """StyleGAN2's modulated conv with the per-sample weights of `modulated_weight`.

    `fused=True` builds those weights and runs one grouped conv (the official inference path);
    `fused=False` scales the activations by s, runs the shared conv and scales the output by
    the demodulation coefficients (the official training path). Both give the same result.
    """
    n = x.shape[0]
    out_channels, in_channels, k, _ = weight.shape
    f = fir_filter().to(x.device) if resample_filter is None else resample_filter
    if fused:
        w = modulated_weight(weight, styles, demodulate).to(x.dtype)
        w = w.reshape(n * out_channels, in_channels, k, k)
        x = conv2d_resample(x.reshape(1, -1, *x.shape[2:]), w, f, up=up, groups=n)
        x = x.reshape(n, out_channels, *x.shape[2:])
    else:
        x = x * styles.to(x.dtype).reshape(n, -1, 1, 1)
        x = conv2d_resample(x, weight.to(x.dtype), f, up=up)
        if demodulate:
            dcoefs = demodulation_coefficients(weight, styles).to(x.dtype)
            x = x * dcoefs.reshape(n, -1, 1, 1)
    return x if noise is None else x + noise.to(x.dtype)


class MinibatchStdLayer(nn.Module):
    """Appends `num_channels` feature maps: the stddev over a group of samples, averaged over
    channels (split into `num_channels` parts) and pixels. Groups have min(group_size, N)
    samples; sample i belongs to group i mod (N / G), as the official reshape(G, -1, ...)."""

    def __init__(
        self,
        group_size: int,  # samples per group (cifar: 32; the official default: 4)
        num_channels: int = 1,  # stddev features appended
    ):
        super().__init__()
        if group_size < 1 or num_channels < 1:
            raise ConfigError(
                f"minibatch stddev group_size={group_size}, num_channels={num_channels}: "
                "both must be integers >= 1"
            )
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g, f = min(self.group_size, n), self.num_channels
        if n % g:
            raise ConfigError(
                f"minibatch stddev: the group size {g} must divide the batch size {n}; use a "
                f"batch size that is a multiple of mbstd_group_size={self.group_size}"
            )
        if c % f:
            raise ConfigError(
                f"minibatch stddev: num_channels={f} must divide the {c} feature channels"
            )
        y = x.reshape(g, -1, f, c // f, h, w)
        y = (y - y.mean(dim=0)).square().mean(dim=0)  # biased variance over the group
        y = (y + 1e-8).sqrt().mean(dim=[2, 3, 4])  # (N/G, F)
        y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (optionally x2 up), noise input, bias, lrelu. The noise is one map
    per sample times a learned strength (initially 0): N(0, 1) per pixel ('random'), a fixed
    buffer drawn at construction ('const') or none."""

    def __init__(self, in_channels, out_channels, w_dim, resolution, up=1, conv_clamp=None):
        super().__init__()
        self.resolution, self.up, self.conv_clamp = resolution, up, conv_clamp
        self.affine = EqualizedLinear(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.noise_strength = nn.Parameter(torch.zeros([]))  # learned, starts at 0
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("resample_filter", fir_filter(), persistent=False)

    def forward(self, x, w, noise_mode="random", fused=True):
        noise = None
        if noise_mode == "random":
            shape = (x.shape[0], 1, self.resolution, self.resolution)
            noise = torch.randn(shape, device=x.device, dtype=x.dtype) * self.noise_strength
        elif noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        x = modulated_conv2d(
            x,
            self.weight,
            self.affine(w),
            noise,
            up=self.up,
            fused=fused,
            resample_filter=self.resample_filter,
        )
        return bias_act(x, self.bias, "lrelu", clamp=self.conv_clamp)


class ToRGB(nn.Module):
    """1x1 modulated conv without demodulation; styles scaled by 1/sqrt(in_channels)."""

    def __init__(self, in_channels, img_channels, w_dim, conv_clamp=None):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = EqualizedLinear(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(img_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(img_channels))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x, w, fused=True):
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused=fused)
        return bias_act(x, self.bias, clamp=self.conv_clamp)
