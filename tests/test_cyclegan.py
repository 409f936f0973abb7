"""CycleGAN: the image pool, the two-direction training step, its data checks, exact resume
(pool included) and the model config."""

from __future__ import annotations

import csv
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

from ganlab.checkpoint import load_model
from ganlab.data.base import TensorDictDataset, collate_batch
from ganlab.errors import ConfigError
from ganlab.losses import BCELoss, HingeLoss, LSGANLoss, RaGANLoss
from ganlab.models import CycleGAN, ImagePool, LinearDecay
from ganlab.networks import PatchGANDiscriminator, ResNetTranslator
from ganlab.train import train
from tests.conftest import FAST, REPO_ROOT, compose_config

SIZE = 16


@pytest.fixture(autouse=True)
def one_thread():
    """These networks are tiny: one thread runs them several times faster than two on a busy
    machine, where the second thread mostly waits for a core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def cyclegan(loss=None, **options) -> CycleGAN:
    torch.manual_seed(0)
    adam = partial(torch.optim.Adam, lr=2e-3, betas=(0.5, 0.999))
    translator = partial(ResNetTranslator, 3, 3, base_width=8, n_blocks=1)
    patchgan = partial(PatchGANDiscriminator, 3, base_width=8, n_layers=2, norm="instance")
    return CycleGAN(
        generator={"a_to_b": translator(), "b_to_a": translator()},
        discriminator={"a": patchgan(), "b": patchgan()},
        loss=loss or LSGANLoss(),
        g_optimizer=adam,
        d_optimizer=adam,
        **options,
    )


def toy_domains(count: int = 8) -> dict[str, torch.Tensor]:
    """Smooth random patterns (A) and colour negatives of other patterns (B): unpaired, and a
    mapping (negation) that both generators can learn."""
    torch.manual_seed(1)
    patterns = nn.functional.interpolate(torch.rand(2 * count, 3, 4, 4) * 2 - 1, size=SIZE)
    return {"a": patterns[:count], "b": -patterns[count:]}


class ToyDomains(pl.LightningDataModule):
    """Unpaired in-memory data declaring its shapes as ganlab's datamodules do."""

    name = "toy_domains"
    data_key = "b"
    sample_shape = source_shape = (3, SIZE, SIZE)

    def __init__(self, count: int = 8, batch_size: int = 2):
        super().__init__()
        self.data = toy_domains(count)
        self.batch_size = batch_size

    def train_dataloader(self) -> DataLoader:
        dataset = TensorDictDataset(**self.data)
        # A generator of its own, as ganlab's datamodules have: each DataLoader iterator then
        # draws its worker seed from it, not from the global RNG the image pool uses.
        generator = torch.Generator().manual_seed(0)
        return DataLoader(
            dataset, batch_size=self.batch_size, collate_fn=collate_batch, generator=generator
        )


def trainer(root: Path | None = None, **options) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=root is not None,
        default_root_dir=root,
        enable_progress_bar=False,
        enable_model_summary=False,
        **options,
    )


def snapshot(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def changed(before: list[torch.Tensor], module: nn.Module) -> bool:
    return any(not torch.equal(b, p) for b, p in zip(before, module.parameters(), strict=True))


def constant_images(*values: float) -> torch.Tensor:
    return torch.tensor(values).view(-1, 1, 1, 1).expand(-1, 3, 2, 2).clone()


def stored_values(pool: ImagePool) -> list[float]:
    return [] if pool.images is None else pool.images[: pool.count, 0, 0, 0].tolist()


# ---------------------------------------------------------------------- the image pool
def test_pool_fills_then_exchanges_half_of_the_fakes_for_stored_ones():
    torch.manual_seed(0)
    pool = ImagePool(3)
    first = constant_images(1, 2, 3)
    assert torch.equal(pool(first), first)  # filling: every new fake is shown and kept
    assert stored_values(pool) == [1, 2, 3]
    exchanges = 0
    for value in range(4, 204):
        before = stored_values(pool)
        (shown,) = pool(constant_images(value))[:, 0, 0, 0].tolist()
        after = stored_values(pool)
        if shown == value:
            assert after == before  # the new fake shown, the pool unchanged
        else:
            exchanges += 1
            slot = before.index(shown)  # a stored fake is shown, the new one takes its slot
            assert after == before[:slot] + [value] + before[slot + 1 :]
    assert 70 < exchanges < 130  # p = 0.5 over 200 fakes


def test_pool_treats_each_image_of_a_batch_in_turn():
    torch.manual_seed(0)
    pool = ImagePool(2)
    shown = pool(constant_images(1, 2, 3, 4, 5, 6))[:, 0, 0, 0].tolist()
    assert shown[:2] == [1, 2]  # the batch fills the pool part way through
    assert pool.count == 2
    # Filling shows and keeps a fake; later each fake is either shown or kept in place of one
    # that is shown: nothing is lost or made up.
    assert sorted(stored_values(pool) + shown) == [1, 1, 2, 2, 3, 4, 5, 6]
    assert shown[2:] != [3, 4, 5, 6]  # some later fakes were exchanged for stored ones


def test_pool_size_zero_passes_fakes_through_and_keeps_none():
    pool = ImagePool(0)
    fakes = torch.randn(4, 3, 2, 2)
    assert pool(fakes) is fakes
    assert pool.get_extra_state()["count"] == 0


def test_pool_draws_are_fixed_by_the_torch_seed():
    def shown(seed: int) -> list[float]:
        torch.manual_seed(seed)
        pool = ImagePool(4)
        return [pool(constant_images(v, v + 0.5))[:, 0, 0, 0].tolist() for v in range(30)]

    assert shown(5) == shown(5)
    assert shown(5) != shown(6)


def test_pool_contents_survive_a_weights_only_checkpoint(tmp_path):
    torch.manual_seed(0)
    pool = ImagePool(4)
    pool(torch.randn(3, 3, 2, 2))
    path = tmp_path / "pool.pt"
    torch.save(pool.state_dict(), path)
    restored = ImagePool(4)
    restored.load_state_dict(torch.load(path, weights_only=True))
    assert restored.count == 3
    assert torch.equal(restored.images[:3], pool.images[:3])
    torch.manual_seed(1)
    after_original = pool(torch.randn(4, 3, 2, 2))
    torch.manual_seed(1)
    after_restored = restored(torch.randn(4, 3, 2, 2))
    assert torch.equal(after_original, after_restored)
    assert torch.equal(restored.images, pool.images)


def test_pool_refuses_bad_sizes_and_fakes_of_another_shape():
    with pytest.raises(ConfigError, match=r"model.pool_size=-1 must be an integer >= 0"):
        ImagePool(-1)
    pool = ImagePool(2)
    pool(torch.zeros(1, 3, 4, 4))
    with pytest.raises(ConfigError, match=r"shape \(3, 4, 4\).*shape \(3, 8, 8\).*crop_size"):
        pool(torch.zeros(1, 3, 8, 8))


# ---------------------------------------------------------------------- building
def test_defaults_follow_the_official_recipe():
    model = cyclegan()
    assert model.gan_weight == 2.0  # the shared LSGAN G loss is half the official MSE
    assert cyclegan(loss=BCELoss()).gan_weight == 1.0
    assert model.cycle_weights == {"a": 10.0, "b": 10.0}
    assert model.identity_weight == 0.5
    assert [p.pool_size for p in model.pools.values()] == [50, 50]
    assert model.generator_ema is None
    assert set(model.watched_networks()) == {
        "generator.a_to_b",
        "generator.b_to_a",
        "discriminator.a",
        "discriminator.b",
    }
    g_opt, d_opt = model.configure_optimizers()[0]
    assert len(g_opt.param_groups[0]["params"]) == len(list(model.generator.parameters()))
    assert len(d_opt.param_groups[0]["params"]) == len(list(model.discriminator.parameters()))


def test_bad_options_are_refused():
    with pytest.raises(ConfigError, match=r"model.generator must be .*\['a_to_b', 'b_to_a'\]"):
        CycleGAN(
            {"a_to_b": nn.Identity()}, {"a": nn.Identity(), "b": nn.Identity()}, None, None, None
        )
    with pytest.raises(ConfigError, match="model.identity_weight=-1 must be >= 0"):
        cyclegan(identity_weight=-1)
    with pytest.raises(ConfigError, match=r"model.direction='a_to_c'.*accepted: \('a_to_b'"):
        cyclegan(direction="a_to_c")
    with pytest.raises(ConfigError, match="model.test_mode='test'"):
        cyclegan(test_mode="test")


def test_residual_generator_starts_as_the_identity_and_learns_a_colour_map():
    torch.manual_seed(0)
    images = torch.rand(4, 3, SIZE, SIZE) * 2 - 1
    official = ResNetTranslator(3, 3, base_width=8, n_blocks=1)
    assert (official(images) - images).abs().mean() > 0.3  # random init: far from the input
    network = ResNetTranslator(3, 3, base_width=8, n_blocks=1, residual=True)
    assert torch.equal(network(images), images)  # exactly, until the zeroed last conv learns
    warmer = (images + torch.tensor([0.2, 0.0, -0.2]).view(1, 3, 1, 1)).clamp(-1, 1)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    start = nn.functional.l1_loss(network(images), warmer).item()
    for _ in range(30):
        loss = nn.functional.l1_loss(network(images), warmer)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    output = network(images)
    assert nn.functional.l1_loss(output, warmer).item() < 0.5 * start
    assert output.min() >= -1 and output.max() <= 1


def test_residual_generator_refuses_what_it_cannot_add():
    with pytest.raises(ConfigError, match=r"channels \(1\) and out_channels \(3\) must be equal"):
        ResNetTranslator(1, 3, residual=True)
    with pytest.raises(ConfigError, match="residual='yes' must be true or false"):
        ResNetTranslator(residual="yes")


def test_paired_batches_are_refused_with_the_data_to_use():
    with pytest.raises(ConfigError, match=r"'a' and 'b', got \['source', 'target'\].*unaligned"):
        cyclegan().domains({"source": torch.zeros(1), "target": torch.zeros(1)})


# ---------------------------------------------------------------------- training
def test_a_training_step_updates_both_generators_and_both_discriminators():
    model = cyclegan(pool_size=4)
    before = {name: snapshot(net) for name, net in model.watched_networks().items()}
    trainer(max_steps=2 * 2, log_every_n_steps=1).fit(model, datamodule=ToyDomains())
    for name, net in model.watched_networks().items():
        assert changed(before[name], net), name
    assert model.pools["a"].count == model.pools["b"].count == 4  # 2 batches of 2 fakes each
    logged = model.trainer.callback_metrics
    terms = ["g_gan_a", "g_gan_b", "g_cycle_a", "g_cycle_b", "g_idt_a", "g_idt_b", "d_a", "d_b"]
    assert {f"train/{t}" for t in terms} <= set(logged)
    parts = sum(logged[f"train/{t}"] for t in terms if t.startswith("g_"))
    assert torch.allclose(parts, logged["train/g_loss"])


def test_identity_weight_zero_drops_the_identity_terms():
    model = cyclegan(identity_weight=0.0)
    data = toy_domains(2)
    total, fakes, terms = model.generator_losses({"a": data["a"], "b": data["b"]})
    assert not any("idt" in name for name in terms)
    assert set(fakes) == {"a", "b"}
    with_identity = cyclegan(identity_weight=0.5)  # same seed: same networks
    total_idt, _, terms_idt = with_identity.generator_losses({"a": data["a"], "b": data["b"]})
    assert {"train/g_idt_a", "train/g_idt_b"} <= set(terms_idt)
    extra = terms_idt["train/g_idt_a"] + terms_idt["train/g_idt_b"]
    assert torch.allclose(total_idt, total + extra)


def test_loss_terms_are_the_official_formulas():
    """cycle_gan_model.py: GAN terms MSE(D(fake), 1), cycle and identity L1 times lambda (and
    lambda_identity), each D 0.5 * (MSE(D(real), 1) + MSE(D(fake), 0))."""
    model = cyclegan(pool_size=0)
    data = toy_domains(2)
    a, b = data["a"], data["b"]
    g, d = model.generator, model.discriminator
    _, fake, terms = model.generator_losses({"a": a, "b": b})
    l1, mse = nn.functional.l1_loss, nn.functional.mse_loss
    ones = torch.ones_like
    expected = {
        "g_gan_b": mse(d["b"](g["a_to_b"](a)), ones(d["b"](b))),
        "g_gan_a": mse(d["a"](g["b_to_a"](b)), ones(d["a"](a))),
        "g_cycle_a": 10 * l1(g["b_to_a"](g["a_to_b"](a)), a),
        "g_cycle_b": 10 * l1(g["a_to_b"](g["b_to_a"](b)), b),
        "g_idt_a": 5 * l1(g["b_to_a"](a), a),
        "g_idt_b": 5 * l1(g["a_to_b"](b), b),
    }
    for name, value in expected.items():
        assert torch.allclose(terms[f"train/{name}"], value, rtol=1e-4), name
    stats = {}
    total = model.discriminator_losses({"a": a, "b": b}, fake, stats)
    for domain, fakes in (("b", fake["b"]), ("a", fake["a"])):
        real_logits, fake_logits = d[domain](data[domain]), d[domain](fakes)
        official = 0.5 * (mse(real_logits, ones(real_logits)) + mse(fake_logits, 0 * fake_logits))
        assert torch.allclose(stats[f"train/d_{domain}"], official, rtol=1e-4), domain
    assert torch.allclose(total, stats["train/d_a"] + stats["train/d_b"])


def test_cycle_loss_falls_on_a_toy_pair_of_domains():
    model = cyclegan(pool_size=4)
    data = toy_domains()

    def cycle_error() -> float:
        rebuilt_a = model.translate(model.translate(data["a"]), use_ema=False, direction="b_to_a")
        return nn.functional.l1_loss(rebuilt_a, data["a"]).item()

    start = cycle_error()
    trainer(max_steps=2 * 60).fit(model, datamodule=ToyDomains())
    assert cycle_error() < 0.75 * start  # 0.53 -> 0.28 here


def test_ema_copy_covers_both_generators():
    model = cyclegan(ema_decay=0.9)
    assert isinstance(model.generator_ema, nn.ModuleDict)
    assert set(model.generator_ema) == {"a_to_b", "b_to_a"}
    before = {name: snapshot(net) for name, net in model.generator_ema.items()}
    trainer(max_steps=2 * 2).fit(model, datamodule=ToyDomains())
    for name, network in model.generator_ema.items():
        assert changed(before[name], network), name
        assert model.translation_network(use_ema=True, direction=name) is network


def state_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    """Every weight, buffer and pool entry, flattened to name -> tensor."""
    flat = {}
    for key, value in module.state_dict().items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": torch.as_tensor(v) for k, v in value.items()})
        else:
            flat[key] = value
    return flat


@pytest.mark.filterwarnings("ignore:The dirpath has changed")
def test_resume_from_a_checkpoint_equals_straight_through_pool_included(tmp_path):
    def run(root: Path, epochs: int, ckpt_path: str | None = None) -> CycleGAN:
        pl.seed_everything(0)
        schedule = partial(torch.optim.lr_scheduler.LambdaLR, lr_lambda=LinearDecay(1, 2))
        model = cyclegan(pool_size=3, g_scheduler=schedule, d_scheduler=schedule)
        trainer(root, max_epochs=epochs).fit(
            model, datamodule=ToyDomains(count=6), ckpt_path=ckpt_path, weights_only=True
        )
        return model

    straight = run(tmp_path / "straight", epochs=3)
    run(tmp_path / "first", epochs=1)
    (checkpoint,) = (tmp_path / "first").glob("**/*.ckpt")
    resumed = run(tmp_path / "resumed", epochs=3, ckpt_path=str(checkpoint))
    expected, got = state_tensors(straight), state_tensors(resumed)
    assert set(expected) == set(got)
    assert "pools.b._extra_state.images" in got and resumed.pools["b"].count == 3
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    assert (resumed.d_steps, resumed.g_steps) == (straight.d_steps, straight.g_steps) == (9, 9)


# ---------------------------------------------------------------------- translation
def test_translate_keeps_order_and_shape_and_names_sizes_that_fit():
    model = cyclegan()
    images = toy_domains(5)["a"]
    together = model.translate(images, batch_size=2)
    assert together.shape == images.shape and together.dtype == torch.float32
    one_by_one = torch.cat([model.translate(image[None]) for image in images])
    assert torch.allclose(together, one_by_one, atol=1e-5)
    backwards = model.translate(images, direction="b_to_a")
    assert torch.allclose(backwards, model.generator["b_to_a"](images), atol=1e-5)
    assert torch.allclose(together, model.generator["a_to_b"](images), atol=1e-5)
    with pytest.raises(ConfigError, match="18x16 do not fit ResNetTranslator.*multiples of 4"):
        model.translate(torch.zeros(1, 3, 18, 16))
    with pytest.raises(ConfigError, match="without masks"):
        model.translate(images, masks=torch.zeros(5, 1, SIZE, SIZE))


def data_shapes(a=(3, SIZE, SIZE), b=(3, SIZE, SIZE), data_key="b"):
    return SimpleNamespace(name="shapes", data_key=data_key, source_shape=a, sample_shape=b)


def test_data_checks_name_the_setting_to_change():
    model = cyclegan()
    model.check_data_compatibility(data_shapes())  # fits: nothing raised
    with pytest.raises(ConfigError, match="'target' \\(paired data\\).*data=unaligned"):
        model.check_data_compatibility(data_shapes(data_key="target"))
    with pytest.raises(ConfigError, match="18x18 do not fit"):
        model.check_data_compatibility(data_shapes((3, 18, 18), (3, 18, 18)))
    with pytest.raises(ConfigError, match="1-channel B images.*identity_weight=0"):
        model.check_data_compatibility(data_shapes(b=(1, SIZE, SIZE)))
    no_identity = cyclegan(identity_weight=0)
    with pytest.raises(ConfigError, match=r"generator.a_to_b maps .* to \(3, 16, 16\).*\(1, 16"):
        no_identity.check_data_compatibility(data_shapes(b=(1, SIZE, SIZE)))
    with pytest.raises(ConfigError, match="discriminator.a cannot judge .*n_layers"):
        model.check_data_compatibility(data_shapes((3, 8, 8), (3, 8, 8)))


# ---------------------------------------------------------------------- config
def model_config() -> DictConfig:
    cfg = OmegaConf.load(REPO_ROOT / "conf/model/cyclegan.yaml")
    cfg.pop("defaults")
    cfg.merge_with(
        {
            "loss": {"_target_": "ganlab.losses.LSGANLoss"},
            "d_regularizers": None,
            "augment": None,
            "generator": {"a_to_b": {"base_width": 4, "n_blocks": 1}},
            "discriminator": {"a": {"base_width": 4, "n_layers": 2}},
        }
    )
    return cfg


def test_model_config_builds_the_recipe():
    model = instantiate(model_config())
    assert isinstance(model, CycleGAN)
    assert isinstance(model.generator, nn.ModuleDict)
    # b_to_a and b follow a_to_b and a, but are networks of their own
    assert model.generator["b_to_a"].model[-2].in_channels == 4
    assert model.generator["a_to_b"] is not model.generator["b_to_a"]
    assert model.discriminator["b"].n_layers == 2
    assert not model.generator["b_to_a"].residual  # the official generator unless asked
    assert model.gan_weight == 2.0 and model.identity_weight == 0.5
    assert model.pools["a"].pool_size == 50
    g_opt, _ = model.configure_optimizers()[0]
    assert g_opt.defaults["lr"] == 2e-4 and g_opt.defaults["betas"] == (0.5, 0.999)


def write_unaligned(root: Path) -> None:
    rng = np.random.default_rng(0)
    for split in ("trainA", "trainB", "testA", "testB"):
        (root / split).mkdir(parents=True)
        for index in range(2):
            pixels = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / split / f"{index}.png")


@pytest.mark.parametrize(
    "options, loss_class, penalties",
    [
        ([], LSGANLoss, []),
        (["loss=hinge", "regularizers=gp", "augment=diffaugment"], HingeLoss, ["gp"]),
        (["loss=ragan", "regularizers=r1"], RaGANLoss, ["r1"]),
    ],
)
def test_composed_cyclegan_fits_unaligned_data_with_any_loss(
    tmp_path, options, loss_class, penalties
):
    write_unaligned(tmp_path / "h2z")
    cfg = compose_config(
        [
            "model=cyclegan",
            "data=unaligned",
            f"data.root={tmp_path / 'h2z'}",
            "data.load_size=20",
            "data.crop_size=16",
            "model.generator.a_to_b.base_width=4",
            "model.generator.a_to_b.n_blocks=1",
            "model.discriminator.a.n_layers=2",
            *options,
        ],
        tmp_path / "run",
    )
    model = instantiate(cfg.model)
    assert type(model.loss) is loss_class
    assert model.gan_weight == (2.0 if loss_class is LSGANLoss else 1.0)
    datamodule = instantiate(cfg.data)
    model.check_data_compatibility(datamodule)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    real = dict(zip("ab", model.domains(batch), strict=True))
    g_loss, fake, _ = model.generator_losses(real)
    g_loss.backward()
    assert all(p.grad is not None for p in model.generator.parameters())
    stats = {}
    d_loss = model.discriminator_losses(real, fake, stats)
    d_loss.backward()
    assert torch.isfinite(d_loss) and torch.isfinite(g_loss)
    assert {f"train/{name}_{d}" for name in penalties for d in "ab"} <= set(stats)
    assert model.translate(torch.zeros(1, 3, 16, 16)).shape == (1, 3, 16, 16)


def test_ganlab_train_runs_cyclegan_and_its_checkpoint_keeps_the_pools(tmp_path):
    run_dir = tmp_path / "run"
    small = [
        "model=cyclegan",
        "data=cyclegan_photos",
        "data.num_train=8",
        "data.num_test=4",
        "data.load_size=32",
        "data.crop_size=32",
        "data.batch_size=2",
        "model.generator.a_to_b.base_width=4",
        "model.generator.a_to_b.n_blocks=1",
        "model.discriminator.a.base_width=4",
        "model.discriminator.a.n_layers=2",
        "model.pool_size=3",
    ]
    train(compose_config([*FAST, *small], run_dir))
    (metrics,) = run_dir.glob("csv/version_*/metrics.csv")
    with open(metrics) as f:
        logged = set(next(csv.reader(f)))
    terms = ["g_gan_a", "g_gan_b", "g_cycle_a", "g_cycle_b", "g_idt_a", "g_idt_b", "d_a", "d_b"]
    assert {f"train/{t}" for t in terms} <= logged
    model, _ = load_model(run_dir / "checkpoints" / "last.ckpt")
    assert isinstance(model, CycleGAN)
    assert model.pools["a"].count == model.pools["b"].count == 3  # 3 batches of 2 fakes, pool 3
    assert model.translate(torch.zeros(2, 3, 32, 32)).shape == (2, 3, 32, 32)
