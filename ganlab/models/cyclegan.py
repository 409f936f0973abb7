"""CycleGAN (Zhu et al., 2017): two generators and two discriminators trained on unpaired
domains, with cycle-consistency and identity terms and a pool of past fakes for each D."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ganlab.errors import ConfigError
from ganlab.losses import LSGANLoss
from ganlab.models.base import GANModule
from ganlab.models.translation import TranslationMixin, check_test_mode

GENERATORS = ("a_to_b", "b_to_a")
DISCRIMINATORS = ("a", "b")  # D["b"] judges domain-B images: real b against a_to_b(a)


class ImagePool(nn.Module):
    """The fakes a discriminator is shown: past fakes as often as new ones (Shrivastava et al.,
    2017; util/image_pool.py of pytorch-CycleGAN-and-pix2pix). Per image of a batch: until
    `pool_size` fakes are stored, store it and return it; after that, with probability 0.5 return
    a stored fake chosen at random and store the new one in its place, else return the new one.
    `pool_size` 0 returns every batch unchanged.

    The stored fakes are module state (`get_extra_state`: a tensor), so checkpoints carry them;
    the draws use torch's CPU generator, which checkpoints restore: a resumed run draws the same.
    Under DDP each process pools its own fakes; a checkpoint holds the first process's pool.
    """

    def __init__(self, pool_size: int = 50):
        super().__init__()
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 0:
            raise ConfigError(f"model.pool_size={pool_size!r} must be an integer >= 0 (0: no pool)")
        self.pool_size = pool_size
        self.images: torch.Tensor | None = None  # (pool_size, C, H, W) once the first fake came
        self.count = 0  # how many of `images` hold a fake

    @torch.no_grad()
    def forward(self, fakes: torch.Tensor) -> torch.Tensor:
        if self.pool_size == 0:
            return fakes
        fakes = fakes.detach()
        self._prepare(fakes)
        # Drawn on the CPU for every image, used or not: no device sync, and a fixed number of
        # draws per batch.
        coins = torch.rand(len(fakes)).tolist()
        slots = torch.randint(self.pool_size, (len(fakes),)).tolist()
        shown = []
        for fake, coin, slot in zip(fakes, coins, slots, strict=True):
            if self.count < self.pool_size:
                self.images[self.count] = fake
                self.count += 1
                shown.append(fake)
            elif coin > 0.5:
                shown.append(self.images[slot].clone())
                self.images[slot] = fake
            else:
                shown.append(fake)
        return torch.stack(shown)

    def _prepare(self, fakes: torch.Tensor) -> None:
        shape = tuple(fakes.shape[1:])
        if self.images is None:
            self.images = fakes.new_empty((self.pool_size, *shape))
        elif tuple(self.images.shape[1:]) != shape:
            raise ConfigError(
                f"the image pool holds fakes of shape {tuple(self.images.shape[1:])}, but this "
                f"batch's fakes have shape {shape}; CycleGAN trains on one image size: give "
                "every training image the same crop (data.crop_size)"
            )
        if self.images.device != fakes.device or self.images.dtype != fakes.dtype:
            self.images = self.images.to(fakes.device, fakes.dtype)  # e.g. loaded on the CPU

    def get_extra_state(self) -> dict[str, Any]:
        stored = torch.empty(0) if self.images is None else self.images[: self.count].clone()
        return {"images": stored, "count": self.count}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        stored = state["images"]
        self.count = min(int(state["count"]), self.pool_size)  # a smaller pool keeps the first
        self.images = None
        if self.count:
            self.images = stored.new_empty((self.pool_size, *stored.shape[1:]))
            self.images[: self.count] = stored[: self.count]

    def extra_repr(self) -> str:
        return f"pool_size={self.pool_size}, stored={self.count}"


def network_group(networks: Any, names: tuple[str, ...], option: str) -> nn.ModuleDict:
    """`networks` (a mapping, e.g. the config's {a_to_b: ..., b_to_a: ...}) as a ModuleDict
    with exactly the keys `names`."""
    keys = sorted(networks.keys()) if isinstance(networks, (Mapping, nn.ModuleDict)) else None
    if keys != sorted(names):
        got = keys if keys is not None else type(networks).__name__
        raise ConfigError(
            f"{option} must be a group of two networks with keys {list(names)}, got {got}"
        )
    return nn.ModuleDict({name: networks[name] for name in names})


class CycleGAN(TranslationMixin, GANModule):
    """CycleGAN as in cycle_gan_model.py of junyanz/pytorch-CycleGAN-and-pix2pix: generators
    {"a_to_b", "b_to_a"}, discriminators {"a", "b"} (D["b"] judges real b against a_to_b(a); the
    official code's G_A, G_B, D_A, D_B are a_to_b, b_to_a, D["b"], D["a"]), an LSGAN objective by
    default, one optimizer over both generators and one over both discriminators.

    Per batch {"a", "b"}: first the G step (both directions, the D's frozen), minimising
        gan_weight * (GAN_a + GAN_b) + cycle_a + cycle_b + idt_a + idt_b
    with cycle_a = cycle_weight_a * |b_to_a(a_to_b(a)) - a|_1 and idt_a = cycle_weight_a *
    identity_weight * |b_to_a(a) - a|_1 (the official lambda_identity multiplies lambda: 0.5 is an
    effective 5; 0 drops the identity terms); then the D step: each D on its real images and on
    fakes drawn through its ImagePool. The D loss is the shared loss as it is: for lsgan that is
    0.5 * (real + fake) of the official code exactly. Terms are logged as they enter the losses
    (train/g_gan_a, g_gan_b, g_cycle_a, g_cycle_b, g_idt_a, g_idt_b, d_a, d_b); `_a`/`_b` name the
    domain of the images judged, reconstructed or kept.

    `translate` maps a -> b; `direction: b_to_a` makes it map b -> a.
    """

    def __init__(
        self,
        generator: Mapping[str, nn.Module],  # {"a_to_b": ..., "b_to_a": ...}
        discriminator: Mapping[str, nn.Module],  # {"a": ..., "b": ...}
        *args: Any,
        cycle_weight_a: float = 10.0,  # lambda_A: weight of |b_to_a(a_to_b(a)) - a|
        cycle_weight_b: float = 10.0,  # lambda_B: weight of |a_to_b(b_to_a(b)) - b|
        identity_weight: float = 0.5,  # lambda_identity, a multiplier of lambda; 0: off
        # Weight of the generators' GAN terms; None: the official scale of criterionGAN, which
        # for lsgan is MSE(D(fake), 1), twice the shared lsgan G loss (2); 1 for other losses.
        gan_weight: float | None = None,
        pool_size: int = 50,  # fakes kept per discriminator; 0: no pool
        direction: str = "a_to_b",  # the generator `translate` uses
        test_mode: str = "eval",
        **kwargs: Any,
    ):
        kwargs.setdefault("data_key", "b")
        kwargs.setdefault("ema_decay", None)
        generator = network_group(generator, GENERATORS, "model.generator")
        discriminator = network_group(discriminator, DISCRIMINATORS, "model.discriminator")
        super().__init__(generator, discriminator, *args, **kwargs)
        weights = {
            "cycle_weight_a": cycle_weight_a,
            "cycle_weight_b": cycle_weight_b,
            "identity_weight": identity_weight,
            "gan_weight": gan_weight,
        }
        for name, value in weights.items():
            if value is not None and value < 0:
                raise ConfigError(f"model.{name}={value} must be >= 0")
        if gan_weight is None:
            gan_weight = 2.0 if isinstance(self.loss, LSGANLoss) else 1.0
        self.cycle_weights = {"a": cycle_weight_a, "b": cycle_weight_b}
        self.identity_weight = identity_weight
        self.gan_weight = gan_weight
        self.direction = check_direction(direction)
        self.test_mode = check_test_mode(test_mode)
        self.pools = nn.ModuleDict({domain: ImagePool(pool_size) for domain in DISCRIMINATORS})

    # ------------------------------------------------------------------ translation
    def translation_network(self, use_ema: bool = True, direction: str | None = None) -> nn.Module:
        return self.sampling_generator(use_ema)[check_direction(direction or self.direction)]

    def translate(
        self,
        inputs: torch.Tensor,
        masks: torch.Tensor | None = None,
        use_ema: bool = True,
        batch_size: int = 16,
        direction: str | None = None,  # "a_to_b" or "b_to_a"; None: model.direction
    ) -> torch.Tensor:
        """TranslationMixin.translate, through the generator of `direction`."""
        chosen = self.direction
        self.direction = check_direction(direction or chosen)
        try:
            return super().translate(inputs, masks, use_ema, batch_size)
        finally:
            self.direction = chosen

    def make_condition(self, source: torch.Tensor, mask: torch.Tensor | None) -> Any:
        if mask is not None:
            raise ConfigError("CycleGAN translates images without masks; leave masks=None")
        return source

    def generate(self, z: Any, cond: Any = None, network: nn.Module | None = None):
        return (network or self.translation_network(use_ema=False))(cond)

    def discriminate(self, x: torch.Tensor, cond: Any = None) -> torch.Tensor:
        """Logits of D[`cond`] ("a" or "b", the domain judged); regularizers reach it this way."""
        return self.discriminator[cond](self.augment(x) if self.augment is not None else x)

    # ------------------------------------------------------------------ training
    def domains(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        if "a" not in batch or "b" not in batch:
            raise ConfigError(
                f"CycleGAN needs unpaired batches with 'a' and 'b', got {sorted(batch)}; use "
                "unpaired data (data=unaligned or data=cyclegan_photos); paired data trains "
                "model=pix2pix"
            )
        return batch["a"], batch["b"]

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        g_opt, d_opt = self.optimizers()
        real = dict(zip(DISCRIMINATORS, self.domains(batch), strict=True))

        with self.toggled_optimizer(g_opt):
            g_loss, fake, stats = self.generator_losses(real)
            g_opt.zero_grad(set_to_none=True)
            self.manual_backward(g_loss)
            g_opt.step()
        self.g_steps += 1
        self.update_ema()

        with self.toggled_optimizer(d_opt):
            d_loss = self.discriminator_losses(real, fake, stats)
            d_opt.zero_grad(set_to_none=True)
            self.manual_backward(d_loss)
            d_opt.step()
            self.after_d_step()

        self.d_steps += 1
        self.images_seen += real["a"].shape[0] * self.trainer.world_size
        self.log_step({**stats, "train/g_loss": g_loss, "train/d_loss": d_loss})

    def generator_losses(self, real: dict[str, torch.Tensor]):
        """Both directions' GAN, cycle and identity terms; returns (total, fakes by domain, the
        logged terms)."""
        g = self.generator
        fake = {"b": g["a_to_b"](real["a"]), "a": g["b_to_a"](real["b"])}
        rebuilt = {"a": g["b_to_a"](fake["b"]), "b": g["a_to_b"](fake["a"])}
        into = {"a": "b_to_a", "b": "a_to_b"}  # the generator that maps into each domain
        terms: dict[str, torch.Tensor] = {}
        for domain in DISCRIMINATORS:
            adversarial, _ = GANModule.g_loss(self, fake[domain], domain, real[domain])
            terms[f"train/g_gan_{domain}"] = self.gan_weight * adversarial
            cycle = F.l1_loss(rebuilt[domain].float(), real[domain].float())
            terms[f"train/g_cycle_{domain}"] = self.cycle_weights[domain] * cycle
            if self.identity_weight > 0:
                kept = F.l1_loss(g[into[domain]](real[domain]).float(), real[domain].float())
                weight = self.cycle_weights[domain] * self.identity_weight
                terms[f"train/g_idt_{domain}"] = weight * kept
        for name, value in terms.items():
            self.watch_finite(value, name)
        total = torch.stack(list(terms.values())).sum()
        self.watch_finite(total, "train/g_loss")
        return total, fake, terms

    def discriminator_losses(self, real, fake, stats: dict[str, torch.Tensor]) -> torch.Tensor:
        """Both D's on their real images and pooled fakes, plus any due regularizer."""
        total = torch.zeros((), device=real["a"].device)
        for domain in DISCRIMINATORS:
            shown = self.pools[domain](fake[domain].detach())
            real_logits = self.discriminate(real[domain], domain).float()
            fake_logits = self.discriminate(shown, domain).float()
            loss = self.loss.d_loss(real_logits, fake_logits)
            self.watch_finite(loss, f"train/d_{domain}")
            stats[f"train/d_{domain}"] = loss
            total = total + loss
            for regularizer in self.d_regularizers:
                if self.d_steps % regularizer.interval == 0:
                    name = f"train/{regularizer.name}_{domain}"
                    term = regularizer(self, real[domain], shown, domain)
                    self.watch_finite(term, name)
                    stats[name] = term
                    total = total + regularizer.interval * term
        self.watch_finite(total, "train/d_loss")
        return total

    # ------------------------------------------------------------------ shape checks
    @torch.no_grad()
    def check_data_compatibility(self, datamodule: Any) -> None:
        """Fail before the first step when the data is not unpaired or the networks do not fit
        its images: both generators, both discriminators and the identity terms are tried."""
        if datamodule is None or not hasattr(datamodule, "sample_shape"):
            return  # a user's own datamodule: nothing declared to check against
        data_name = getattr(datamodule, "name", type(datamodule).__name__)
        data_key = getattr(datamodule, "data_key", self.data_key)
        if data_key != "b":
            raise ConfigError(
                f"data '{data_name}' yields batches of '{data_key}' (paired data), but CycleGAN "
                "trains on unpaired batches of 'a' and 'b'; use data=unaligned or "
                "data=cyclegan_photos, or model=pix2pix for paired data"
            )
        shapes = {"b": tuple(datamodule.sample_shape)}
        shapes["a"] = tuple(getattr(datamodule, "source_shape", shapes["b"]))
        for shape in shapes.values():
            self.check_input_size(*shape[-2:])
        if self.identity_weight > 0 and shapes["a"][0] != shapes["b"][0]:
            raise ConfigError(
                f"data '{data_name}' has {shapes['a'][0]}-channel A images and "
                f"{shapes['b'][0]}-channel B images; the identity terms need both alike: set "
                "model.identity_weight=0"
            )
        for network, source, target in (("a_to_b", "a", "b"), ("b_to_a", "b", "a")):
            images = torch.zeros(2, *shapes[source], device=self.device)
            with self.test_time(self.generator[network]):
                produced = tuple(self.generator[network](images).shape[1:])
            if produced != shapes[target]:
                raise ConfigError(
                    f"model.generator.{network} maps data '{data_name}' images of shape "
                    f"{shapes[source]} to {produced}, but domain {target.upper()} images have "
                    f"shape {shapes[target]}; set the generator's channels and out_channels"
                )
        for domain in DISCRIMINATORS:
            self.check_discriminator(domain, shapes[domain], data_name)

    def check_discriminator(self, domain: str, shape: tuple[int, ...], data_name: str) -> None:
        network = self.discriminator[domain]
        expected = getattr(network, "in_channels", shape[0])
        if expected != shape[0]:
            raise ConfigError(
                f"model.discriminator.{domain} takes {expected} input channels, but domain "
                f"{domain.upper()} images of data '{data_name}' have {shape[0]}; set "
                f"model.discriminator.{domain}.channels={shape[0]}"
            )
        try:
            with self.test_time(network):
                network(torch.zeros(2, *shape, device=self.device))
        except ValueError as err:  # PatchGAN: too many stride-2 layers for the image size
            raise ConfigError(
                f"model.discriminator.{domain} cannot judge data '{data_name}' images of shape "
                f"{shape}: {err}; lower its n_layers or use larger crops (data.crop_size)"
            ) from err


def check_direction(direction: str) -> str:
    if direction not in GENERATORS:
        raise ConfigError(f"model.direction={direction!r} is not supported; accepted: {GENERATORS}")
    return direction
