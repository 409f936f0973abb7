"""ADA, adaptive discriminator augmentation (Karras et al., 2020), after the official
NVlabs/stylegan2-ada-pytorch (training/augment.py: the pipeline; training_loop.py: the
controller of its probability p).

Every discriminator input, real or fake, R1's included, goes through the same pipeline: each
transformation is applied to each image independently with probability `multiplier * p`. The
geometric ones compose one affine map per image, executed once as in the official code: reflect
padding, x2 upsampling with the orthogonal sym6 low-pass filter, bilinear `grid_sample`,
filtered /2 downsampling. The colour ones compose one 4x4 matrix per image. Everything is plain
PyTorch with a double backward (R1 through the augmentation), and the randomness comes from
torch's global generator, so checkpoints resume it.

p is tuned while training: every `interval` D steps, r_t = E[sign(D(real))] over those steps
moves p by sign(r_t - target) * (images in those steps) / (speed_kimg * 1000), so p can go from
0 to 1 in `speed_kimg` thousand images. p, r_t and the running sums are buffers, so checkpoints
hold them and resuming continues the schedule.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ganlab.errors import ConfigError
from ganlab.losses.augment import require_images

# The orthogonal low-pass filter of the official geometric pipeline (Daubechies symlet 6).
SYM6 = (
    0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
    0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
    -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148,
)  # fmt: skip

GEOMETRIC = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac")
COLOR = ("brightness", "contrast", "lumaflip", "hue", "saturation")
# Forward calls a model may make before it first reports D's real logits (d_loss augments the
# real and the fake batch, then reports); a third call means the model never reports them.
_CALLS_BEFORE_FIRST_REPORT = 2


# ---------------------------------------------------------------------- matrices, per image
def _matrix(rows: list[list[torch.Tensor | float]], like: torch.Tensor) -> torch.Tensor:
    """(B, n, n) from rows of per-image values (B,) or constants."""
    elements = [
        e if isinstance(e, torch.Tensor) else torch.full_like(like, e) for row in rows for e in row
    ]
    return torch.stack(elements, dim=-1).reshape(like.shape[0], len(rows), len(rows))


def _translate2d(tx, ty, like):
    return _matrix([[1, 0, tx], [0, 1, ty], [0, 0, 1]], like)


def _scale2d(sx, sy, like):
    return _matrix([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], like)


def _rotate2d(theta, like):
    cos, sin = torch.cos(theta), torch.sin(theta)
    return _matrix([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]], like)


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _fir_rows(x: torch.Tensor, taps: torch.Tensor, stride: int = 1) -> torch.Tensor:
    """Cross-correlate each row of (B, L) signals with `taps`."""
    return F.conv1d(x.unsqueeze(1), taps.view(1, 1, -1), stride=stride).squeeze(1)


def _upsample2x_rows(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """x2 by zero insertion and the flipped filter with gain 2: the official upfirdn2d
    upsample2d along one axis, padding (taps + 1) // 2 before and (taps - 2) // 2 after."""
    before, after = (taps.numel() + 1) // 2, (taps.numel() - 2) // 2
    x = torch.stack([x, torch.zeros_like(x)], dim=-1).flatten(-2)
    return _fir_rows(F.pad(x, (before, after)), taps.flip(0) * 2)


def _downsample2x_rows(x: torch.Tensor, taps: torch.Tensor, crop: int) -> torch.Tensor:
    """/2 with the unflipped filter, `crop` pixels cropped from each side: the official
    downsample2d(padding=-crop, flip_filter=True) along one axis."""
    trim = crop - (taps.numel() - 1) // 2  # it pads (taps - 1) // 2 and crops `crop`
    return _fir_rows(x[:, trim : x.shape[1] - trim], taps, stride=2)


def resampling_operators(size: int, taps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The two linear maps of one image axis of `size` pixels, as matrices (float64): reflect
    padding by size - 1 on each side then x2 FIR upsampling (2 (3 size - 2), size), and FIR /2
    downsampling of the resampled grid, size + 2 * pad in the official's pixels (size, 2 (size
    + 2 pad)), pad = taps // 4. Applied as matmuls on each axis, they cost far less than the
    filters as (depthwise) convolutions, and have every derivative."""
    taps = taps.to(torch.float64)
    basis = torch.eye(size, dtype=torch.float64)
    padded = F.pad(basis.view(size, 1, size), (size - 1, size - 1), mode="reflect").squeeze(1)
    up = _upsample2x_rows(padded, taps).T
    grid_size = 2 * (size + 2 * (taps.numel() // 4))
    down = _downsample2x_rows(
        torch.eye(grid_size, dtype=torch.float64), taps, crop=grid_size // 2 - size
    )
    return up, down.T


class AdaptiveAugment(nn.Module):
    """The official 'bgc' pipeline (blit, geometric, colour) with an adaptive probability p.

    `target=None` keeps p fixed at `initial_p` (the official `--aug=fixed --p=...`), which any
    model can use; adaptive p reads the sign of D's real logits, which `GANModule.d_loss`
    reports through `observe_real_logits`."""

    def __init__(
        self,
        target: float | None = 0.6,  # r_t that p is tuned toward; None: p fixed at initial_p
        interval: int = 4,  # D steps between adjustments of p
        speed_kimg: float = 500.0,  # thousands of images for p to go from 0 to 1
        initial_p: float = 0.0,
        # Probability multipliers of each transformation (0 turns it off), in the official order.
        xflip: float = 1.0,
        rotate90: float = 1.0,
        xint: float = 1.0,  # integer translation
        scale: float = 1.0,  # isotropic scaling
        rotate: float = 1.0,  # arbitrary rotation (before or after the anisotropic scaling)
        aniso: float = 1.0,  # anisotropic scaling
        xfrac: float = 1.0,  # fractional translation
        brightness: float = 1.0,
        contrast: float = 1.0,
        lumaflip: float = 1.0,
        hue: float = 1.0,  # rotation around the luma axis (RGB only)
        saturation: float = 1.0,  # (RGB only)
        xint_max: float = 0.125,  # integer translation range, relative to the image size
        scale_std: float = 0.2,  # log2 std of the isotropic scale
        rotate_max: float = 1.0,  # rotation range, 1: the full circle
        aniso_std: float = 0.2,  # log2 std of the anisotropic scale
        xfrac_std: float = 0.125,  # std of the fractional translation, relative to the size
        brightness_std: float = 0.2,
        contrast_std: float = 0.5,  # log2 std
        hue_max: float = 1.0,  # hue rotation range, 1: the full circle
        saturation_std: float = 1.0,  # log2 std
    ):
        super().__init__()
        if target is not None and not 0.0 <= target <= 1.0:
            raise ConfigError(f"augment.target={target} must be in [0, 1], or null for fixed p")
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ConfigError(f"augment.interval={interval!r} must be an integer >= 1 (D steps)")
        if not speed_kimg > 0:
            raise ConfigError(f"augment.speed_kimg={speed_kimg} must be > 0 (thousands of images)")
        if not 0.0 <= initial_p <= 1.0:
            raise ConfigError(f"augment.initial_p={initial_p} must be in [0, 1]")
        local = locals()
        self.multipliers = {name: float(local[name]) for name in GEOMETRIC + COLOR}
        self.ranges = {
            name: float(local[name])
            for name in ("xint_max", "scale_std", "rotate_max", "aniso_std", "xfrac_std")
            + ("brightness_std", "contrast_std", "hue_max", "saturation_std")
        }
        negative = {k: v for k, v in {**self.multipliers, **self.ranges}.items() if v < 0}
        if negative:
            name, value = next(iter(negative.items()))
            raise ConfigError(f"augment.{name}={value} must be >= 0 (0 turns it off)")
        self.target, self.interval, self.speed_kimg = target, interval, float(speed_kimg)
        self.register_buffer("p", torch.tensor(float(initial_p)))
        self.register_buffer("rt", torch.zeros(()))  # r_t of the last adjustment interval
        taps = torch.tensor(SYM6, dtype=torch.float64)  # float64: float64 inputs stay exact
        self.register_buffer("filter_taps", taps / taps.sum(), persistent=False)
        # Since the last adjustment, this process's sum of sign(D(real)) (on the device), reals
        # counted and D steps (host ints: no device read per step). Checkpointed as the module's
        # extra state, not as buffers: DDP overwrites buffers with the first process's at every
        # forward, and each process must keep its own sums until they are added up.
        self._sign_sum = torch.zeros((), dtype=torch.float64)
        self._sign_count = 0
        self._pending_steps = 0
        self._reported = False
        self._calls_unreported = 0
        self._operator_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    # ------------------------------------------------------------------ the controller
    @torch.no_grad()
    def observe_real_logits(self, real_logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """Called once per D step with D's logits of the (augmented) real batch; adjusts p every
        `interval` steps. Returns p and r_t for the step's statistics (device tensors, logged
        on logging steps only)."""
        self._reported = True
        if self.target is not None:
            if self._sign_sum.device != real_logits.device:
                self._sign_sum = self._sign_sum.to(real_logits.device)
            self._sign_sum += real_logits.detach().sign().sum().to(torch.float64)
            self._sign_count += real_logits.numel()
            self._pending_steps += 1
            if self._pending_steps >= self.interval:
                self.adjust()
        return {"train/ada_p": self.p.clone(), "train/ada_rt": self.rt.clone()}

    @torch.no_grad()
    def adjust(self) -> None:
        """p += sign(r_t - target) * images / (speed_kimg * 1000), clamped to [0, 1], with r_t and
        the image count summed over every process; then the sums restart."""
        sums = torch.stack([self._sign_sum, self._sign_sum.new_full((), self._sign_count)])
        if _distributed():
            torch.distributed.all_reduce(sums)
        rt = sums[0] / sums[1].clamp(min=1)
        step = torch.sign(rt - self.target) * sums[1] / (self.speed_kimg * 1000)
        self.p.copy_((self.p + step).clamp(0.0, 1.0))
        self.rt.copy_(rt)
        self._sign_sum = torch.zeros_like(self._sign_sum)
        self._sign_count = self._pending_steps = 0

    def get_extra_state(self) -> dict:
        """The running sums since the last adjustment (plain values and a tensor)."""
        return {
            "sign_sum": self._sign_sum.detach().clone(),
            "sign_count": self._sign_count,
            "pending_steps": self._pending_steps,
        }

    def set_extra_state(self, state: dict) -> None:
        # Under DDP the checkpoint holds the first process's sums: the others start theirs
        # again, which loses fewer than `interval` of their steps in the next r_t.
        first = not _distributed() or torch.distributed.get_rank() == 0
        self._sign_sum = state["sign_sum"].to(torch.float64) * (1 if first else 0)
        self._sign_count = int(state["sign_count"]) if first else 0
        self._pending_steps = int(state["pending_steps"])

    def _check_reported(self) -> None:
        """An adaptive p that is never told D's real logits would stay at its start: refuse."""
        if self.target is None or self._reported or not self.training:
            return
        self._calls_unreported += 1
        if self._calls_unreported > _CALLS_BEFORE_FIRST_REPORT:
            raise ConfigError(
                "augment=ada tunes its probability from the sign of D's real logits, which this "
                "model's training step does not report (GANModule.d_loss reports them; AC-GAN "
                "and CycleGAN compute their own); use a fixed probability "
                "(augment.target=null augment.initial_p=0.2) or augment=diffaugment"
            )

    # ------------------------------------------------------------------ the pipeline
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        require_images(images, "ada")
        self._check_reported()
        # Augment in float32 (float64 stays float64), outside autocast, as the official code.
        dtype = torch.float64 if images.dtype == torch.float64 else torch.float32
        with torch.autocast(images.device.type, enabled=False):
            x = images.to(dtype)
            x = self._geometric(x)
            x = self._color(x)
        return x.to(images.dtype)

    def _chosen(self, name: str, batch: int, like: torch.Tensor, p=None) -> torch.Tensor:
        """Which images get transformation `name`: probability multiplier * p (or `p`)."""
        probability = self.multipliers[name] * self.p if p is None else p
        return torch.rand(batch, device=like.device, dtype=like.dtype) < probability

    def _draw(self, batch: int, like: torch.Tensor, normal: bool = False) -> torch.Tensor:
        draw = torch.randn if normal else torch.rand
        return draw(batch, device=like.device, dtype=like.dtype)

    def _geometric(self, x: torch.Tensor) -> torch.Tensor:
        """One inverse affine map per image (output pixel -> input pixel, origin at the centre),
        composed in the official order; images with no transformation chosen pass unchanged."""
        enabled = [n for n in GEOMETRIC if self.multipliers[n] > 0]
        if not enabled:
            return x
        batch, _, height, width = x.shape
        r, m = self.ranges, self.multipliers
        one = torch.ones(batch, device=x.device, dtype=x.dtype)
        zero = torch.zeros_like(one)
        g_inv = torch.eye(3, device=x.device, dtype=x.dtype).expand(batch, 3, 3)
        any_chosen = torch.zeros(batch, dtype=torch.bool, device=x.device)

        def choose(name, value, neutral, p=None):
            nonlocal any_chosen
            chosen = self._chosen(name, batch, x, p)
            any_chosen = any_chosen | chosen
            return torch.where(chosen.view(-1, *[1] * (value.dim() - 1)), value, neutral)

        if m["xflip"] > 0:
            flip = choose("xflip", torch.floor(self._draw(batch, x) * 2), zero)
            g_inv = g_inv @ _scale2d(1 / (1 - 2 * flip), one, one)
        if m["rotate90"] > 0:
            quarter = choose("rotate90", torch.floor(self._draw(batch, x) * 4), zero)
            g_inv = g_inv @ _rotate2d(math.pi / 2 * quarter, one)
        if m["xint"] > 0:
            shift = (torch.rand(batch, 2, device=x.device, dtype=x.dtype) * 2 - 1) * r["xint_max"]
            shift = choose("xint", shift, torch.zeros_like(shift))
            g_inv = g_inv @ _translate2d(
                -torch.round(shift[:, 0] * width), -torch.round(shift[:, 1] * height), one
            )
        if m["scale"] > 0:
            s = choose("scale", torch.exp2(self._draw(batch, x, normal=True) * r["scale_std"]), one)
            g_inv = g_inv @ _scale2d(1 / s, 1 / s, one)
        # Rotation before or after the anisotropic scaling, each with p_rot: P(either) = p.
        p_rot = 1 - torch.sqrt((1 - m["rotate"] * self.p).clamp(0, 1))
        if m["rotate"] > 0:
            theta = (self._draw(batch, x) * 2 - 1) * math.pi * r["rotate_max"]
            g_inv = g_inv @ _rotate2d(choose("rotate", theta, zero, p_rot), one)
        if m["aniso"] > 0:
            s = choose("aniso", torch.exp2(self._draw(batch, x, normal=True) * r["aniso_std"]), one)
            g_inv = g_inv @ _scale2d(1 / s, s, one)
        if m["rotate"] > 0:
            theta = (self._draw(batch, x) * 2 - 1) * math.pi * r["rotate_max"]
            g_inv = g_inv @ _rotate2d(choose("rotate", theta, zero, p_rot), one)
        if m["xfrac"] > 0:
            shift = torch.randn(batch, 2, device=x.device, dtype=x.dtype) * r["xfrac_std"]
            shift = choose("xfrac", shift, torch.zeros_like(shift))
            g_inv = g_inv @ _translate2d(-shift[:, 0] * width, -shift[:, 1] * height, one)
        moved = self._warp(x, g_inv)
        return torch.where(any_chosen.view(-1, 1, 1, 1), moved, x)

    def _warp(self, x: torch.Tensor, g_inv: torch.Tensor) -> torch.Tensor:
        """Resample every image by its map: the official execution, with the reflect padding at
        its largest (size - 1 per side) instead of a per-batch margin, which would need a host
        read of the maps; inside the official margin both give the same pixels."""
        batch, channels, height, width = x.shape
        up_h, down_h = self._operators(height, x)
        up_w, down_w = self._operators(width, x)
        x = up_h @ x @ up_w.T  # reflect-padded and upsampled
        one = torch.ones(batch, device=x.device, dtype=x.dtype)
        # Into the upsampled image's pixel grid (the same centre), with the half-pixel phase.
        g_inv = _scale2d(2 * one, 2 * one, one) @ g_inv @ _scale2d(0.5 * one, 0.5 * one, one)
        half = _translate2d(-0.5 * one, -0.5 * one, one)
        g_inv = half @ g_inv @ _translate2d(0.5 * one, 0.5 * one, one)
        out_h, out_w = down_h.shape[1], down_w.shape[1]
        to_unit = _scale2d(2 / x.shape[3] * one, 2 / x.shape[2] * one, one)
        from_unit = _scale2d(out_w / 2 * one, out_h / 2 * one, one)
        theta = (to_unit @ g_inv @ from_unit)[:, :2, :]
        grid = F.affine_grid(theta, [batch, channels, out_h, out_w], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return down_h @ x @ down_w.T

    def _operators(self, size: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`resampling_operators` for this size, built once per size, device and dtype."""
        key = (size, like.device, like.dtype)
        if key not in self._operator_cache:
            operators = resampling_operators(size, self.filter_taps.cpu())
            self._operator_cache[key] = tuple(m.to(like.device, like.dtype) for m in operators)
        return self._operator_cache[key]

    def _color(self, x: torch.Tensor) -> torch.Tensor:
        """One 4x4 colour matrix per image (brightness, contrast, luma flip, hue, saturation);
        images with no transformation chosen pass unchanged."""
        batch, channels, height, width = x.shape
        rgb = channels == 3
        enabled = [n for n in COLOR if self.multipliers[n] > 0 and (rgb or n in COLOR[:3])]
        if not enabled:
            return x
        if channels not in (1, 3):
            raise ConfigError(
                f"augment=ada's colour transformations take RGB (3 channels) or grayscale (1) "
                f"images, got {channels} channels; turn them off (augment.brightness=0 "
                "augment.contrast=0 augment.lumaflip=0 augment.hue=0 augment.saturation=0)"
            )
        r, m = self.ranges, self.multipliers
        one = torch.ones(batch, device=x.device, dtype=x.dtype)
        zero = torch.zeros_like(one)
        eye = torch.eye(4, device=x.device, dtype=x.dtype)
        color = eye.expand(batch, 4, 4)
        any_chosen = torch.zeros(batch, dtype=torch.bool, device=x.device)
        luma = torch.tensor([1, 1, 1, 0], device=x.device, dtype=x.dtype) / math.sqrt(3)
        luma_outer = torch.outer(luma, luma)

        def choose(name, value, neutral):
            nonlocal any_chosen
            chosen = self._chosen(name, batch, x)
            any_chosen = any_chosen | chosen
            return torch.where(chosen, value, neutral)

        if m["brightness"] > 0:
            b = choose("brightness", self._draw(batch, x, normal=True) * r["brightness_std"], zero)
            translate = _matrix([[1, 0, 0, b], [0, 1, 0, b], [0, 0, 1, b], [0, 0, 0, 1]], one)
            color = translate @ color
        if m["contrast"] > 0:
            c = choose(
                "contrast", torch.exp2(self._draw(batch, x, normal=True) * r["contrast_std"]), one
            )
            color = _matrix([[c, 0, 0, 0], [0, c, 0, 0], [0, 0, c, 0], [0, 0, 0, 1]], one) @ color
        if m["lumaflip"] > 0:
            flip = choose("lumaflip", torch.floor(self._draw(batch, x) * 2), zero)
            color = (eye - 2 * luma_outer * flip.view(-1, 1, 1)) @ color  # Householder
        if rgb and m["hue"] > 0:
            theta = (self._draw(batch, x) * 2 - 1) * math.pi * r["hue_max"]
            color = _rotation_about_luma(choose("hue", theta, zero), one) @ color
        if rgb and m["saturation"] > 0:
            s = choose(
                "saturation",
                torch.exp2(self._draw(batch, x, normal=True) * r["saturation_std"]),
                one,
            )
            color = (luma_outer + (eye - luma_outer) * s.view(-1, 1, 1)) @ color
        flat = x.reshape(batch, channels, height * width)
        if rgb:
            out = color[:, :3, :3] @ flat + color[:, :3, 3:]
        else:  # grayscale: the mean of the RGB rows acting on a gray pixel
            row = color[:, :3, :].mean(dim=1, keepdim=True)
            out = flat * row[:, :, :3].sum(dim=2, keepdim=True) + row[:, :, 3:]
        out = out.reshape(batch, channels, height, width)
        return torch.where(any_chosen.view(-1, 1, 1, 1), out, x)

    def extra_repr(self) -> str:
        on = [n for n, v in self.multipliers.items() if v > 0]
        control = "fixed p" if self.target is None else f"target={self.target}"
        return f"{control}, interval={self.interval}, speed_kimg={self.speed_kimg}, ops={on}"


def _rotation_about_luma(theta: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B, 4, 4) rotation by `theta` around the luma axis (1, 1, 1) / sqrt(3) (Rodrigues)."""
    vx = vy = vz = 1 / math.sqrt(3)
    s, c = torch.sin(theta), torch.cos(theta)
    cc = 1 - c
    return _matrix(
        [
            [vx * vx * cc + c, vx * vy * cc - vz * s, vx * vz * cc + vy * s, 0],
            [vy * vx * cc + vz * s, vy * vy * cc + c, vy * vz * cc - vx * s, 0],
            [vz * vx * cc - vy * s, vz * vy * cc + vx * s, vz * vz * cc + c, 0],
            [0, 0, 0, 1],
        ],
        like,
    )
