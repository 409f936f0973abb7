"""ganlab-sample inputs=..., ganlab-eval and the training callbacks on image-to-image models:
a pix2pix checkpoint trained on A|B files written here, and small datamodules of the other
tasks (super-resolution, inpainting, unpaired) built from tensors."""

from __future__ import annotations

import json
import re
import shutil
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from ganlab.callbacks.sample_grid import translation_rows
from ganlab.checkpoint import load_model
from ganlab.data.base import GANDataModule, TensorDictDataset
from ganlab.errors import ConfigError
from ganlab.eval import evaluate
from ganlab.losses import BCELoss
from ganlab.metrics.translation_eval import TranslationQuality
from ganlab.models import PairedTranslationGAN
from ganlab.networks import MSRResNet, PatchGANDiscriminator, UnetGenerator
from ganlab.sample import sample
from ganlab.train import train
from tests.conftest import FAST, SMALL_DCGAN, compose_config, run_command

SIZE = 32  # the U-Net below (num_downs 5) takes multiples of 32
PIX2PIX = [
    "model=pix2pix",
    "model.generator.num_downs=5",
    "model.generator.base_width=8",
    "model.discriminator.base_width=8",
    "model.discriminator.n_layers=2",
    "callbacks.sample_quality.every_n_epochs=1",
    "trainer.accelerator=cpu",
]


def write_aligned(root: Path, counts: dict[str, int]) -> Path:
    """pix2pix's layout: root/<split>/<i>.png, A (noise) left of B (its negative)."""
    rng = np.random.default_rng(0)
    for split, count in counts.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            a = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
            Image.fromarray(np.concatenate([a, 255 - a], 1)).save(root / split / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def pix2pix_run(tmp_path_factory):
    """One epoch of pix2pix on 8 training pairs, scored on 4 test pairs: the run directory."""
    base = tmp_path_factory.mktemp("pix2pix")
    root = write_aligned(base / "aligned", {"train": 8, "test": 4})
    aligned = [f"data.root={root}", f"data.load_size={SIZE}", f"data.crop_size={SIZE}"]
    cfg = compose_config(
        [*FAST, *PIX2PIX, "data=aligned", *aligned, "data.batch_size=4"], base / "run"
    )
    metrics = train(cfg)
    return {"dir": base / "run", "data": root, "metrics": metrics}


@pytest.fixture
def ckpt(pix2pix_run):
    return pix2pix_run["dir"] / "checkpoints" / "last.ckpt"


@pytest.fixture
def no_torch_weights(tmp_path, monkeypatch):
    """An empty torch hub: LPIPS backbones are missing whatever this machine has cached."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home"


def aligned_test_halves(root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """The test split's A and B halves as [-1, 1] tensors, in file order."""
    pairs = [np.asarray(Image.open(f)) for f in sorted((root / "test").iterdir())]
    arrays = torch.from_numpy(np.stack(pairs)).permute(0, 3, 1, 2).float() / 127.5 - 1
    return arrays[..., :SIZE], arrays[..., SIZE:]


def levels(images: torch.Tensor) -> np.ndarray:
    """[-1, 1] -> 8-bit levels (HWC), as a PNG of them holds."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()


def psnr_8bit(fake: torch.Tensor, real: torch.Tensor) -> float:
    """Mean per-image PSNR on 8-bit levels, written out with numpy."""
    f = np.stack([levels(x) for x in fake]).astype(np.float64)
    r = np.stack([levels(x) for x in real]).astype(np.float64)
    mse = ((f - r) ** 2).reshape(len(f), -1).mean(1)
    return float(np.mean(10 * np.log10(255.0**2 / mse)))


# ---------------------------------------------------------------------- training callbacks
def test_training_logs_val_psnr_and_writes_input_output_target_grids(pix2pix_run):
    run = pix2pix_run["dir"]
    assert {"val/psnr", "val/ssim"} <= set(pix2pix_run["metrics"])
    [record] = json.loads((run / "metrics.json").read_text())
    assert set(record["scores"]) == {"psnr", "ssim"}
    protocol = record["protocol"]
    assert protocol["split"] == "test" and protocol["count"] == 4
    assert protocol["test_mode"] == "eval" and protocol["crop_border"] == 0
    assert record["scores"]["psnr"] == pytest.approx(pix2pix_run["metrics"]["val/psnr"], 1e-5)

    grid = np.asarray(Image.open(run / "samples" / "epoch_0000.png").convert("RGB"))
    pad = 2  # make_grid's padding
    assert grid.shape == (4 * (SIZE + pad) + pad, 3 * (SIZE + pad) + pad, 3)  # 4 rows, 3 columns
    model, _ = load_model(run / "checkpoints" / "last.ckpt")
    sources, targets = aligned_test_halves(pix2pix_run["data"])
    output = model.translate(sources[:1])[0]

    def cell(row: int, column: int) -> np.ndarray:
        top, left = pad + row * (SIZE + pad), pad + column * (SIZE + pad)
        return grid[top : top + SIZE, left : left + SIZE].astype(int)

    assert np.abs(cell(0, 0) - levels(sources[0])).max() <= 1
    assert np.abs(cell(0, 1) - levels(output)).max() <= 1
    assert np.abs(cell(0, 2) - levels(targets[0])).max() <= 1


# ---------------------------------------------------------------------- ganlab-eval
def test_eval_scores_the_test_split_with_its_protocol(ckpt, pix2pix_run, tmp_path):
    result = run_command(
        "ganlab-eval",
        f"ckpt_path={ckpt}",
        cwd=tmp_path,
        env={"TORCH_HOME": str(tmp_path / "empty_torch_home")},
    )
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record == json.loads(ckpt.with_suffix(".eval.json").read_text())
    assert set(record["scores"]) == {"psnr", "ssim"}  # LPIPS skipped: no backbone weights
    warnings = [line for line in result.stderr.splitlines() if "LPIPS" in line]
    assert len(warnings) == 1 and "alexnet-owt-7be5be79.pth" in warnings[0]  # one, naming the file
    model, _ = load_model(ckpt)
    sources, targets = aligned_test_halves(pix2pix_run["data"])
    assert record["scores"]["psnr"] == pytest.approx(psnr_8bit(model.translate(sources), targets))
    protocol = record["protocol"]
    assert protocol["split"] == "test" and protocol["count"] == 4
    assert protocol["test_mode"] == "eval" and protocol["use_ema"] is True
    assert protocol["generator"] == "raw"  # pix2pix keeps no EMA generator
    assert protocol["channel"] == "RGB" and protocol["data_range"].startswith("[0, 255]")
    assert protocol["data_protocol"] is None and "skipped" in protocol["lpips"]


def eval_config(ckpt: Path, *overrides: str):
    return compose_config([f"ckpt_path={ckpt}", *overrides], ckpt.parent, "eval")


def test_eval_copies_the_data_protocol_file(pix2pix_run, tmp_path, no_torch_weights):
    root = tmp_path / "aligned"
    shutil.copytree(pix2pix_run["data"], root)
    made = {"task": "paired", "kernel": "none", "seed": 0}
    (root / "PROTOCOL.json").write_text(json.dumps(made))
    ckpt = tmp_path / "last.ckpt"
    shutil.copy(pix2pix_run["dir"] / "checkpoints" / "last.ckpt", ckpt)
    record = evaluate(eval_config(ckpt, f"++data.root={root}", "metrics=[psnr]"))
    assert record["protocol"]["data_protocol"] == made
    assert set(record["scores"]) == {"psnr"}


def test_eval_refuses_an_unreadable_data_protocol_file(pix2pix_run, tmp_path):
    root = tmp_path / "aligned"
    shutil.copytree(pix2pix_run["data"], root)
    (root / "PROTOCOL.json").write_text("{not json")
    with pytest.raises(ConfigError, match="PROTOCOL.json cannot be read as JSON"):
        evaluate(
            eval_config(pix2pix_run["dir"] / "checkpoints" / "last.ckpt", f"++data.root={root}")
        )


def test_the_data_protocol_is_found_above_a_loader_s_subfolders(tmp_path):
    """SR loaders read root/train/HR and root/test/...: PROTOCOL.json sits at root."""
    (tmp_path / "set" / "train" / "HR").mkdir(parents=True)
    made = {"kernel": "PIL bicubic, antialiased"}
    (tmp_path / "set" / "PROTOCOL.json").write_text(json.dumps(made))
    targets = smooth_images(2, SIZE)
    data = TensorPairs("paired", {"source": -targets, "target": targets})
    data.sources = [(tmp_path / "set" / "train" / "HR", [])]
    model = paired_model(UnetGenerator(3, 3, num_downs=5, base_width=8))
    result = TranslationQuality(metrics=["psnr"]).evaluate(model, data)
    assert result.protocol["data_protocol"] == made


def test_eval_lpips_asked_without_weights_is_an_error_naming_the_file(ckpt, no_torch_weights):
    with pytest.raises(ConfigError) as raised:
        evaluate(eval_config(ckpt, "metrics=[lpips]"))
    message = str(raised.value)
    assert "alexnet-owt-7be5be79.pth" in message and str(no_torch_weights) in message
    assert "lpips_weights_path=" in message


def test_eval_lpips_from_a_local_backbone_file(ckpt, tmp_path, no_torch_weights):
    weights = tmp_path / "squeezenet.pth"
    torch.save(torchvision.models.squeezenet1_1(weights=None).state_dict(), weights)
    record = evaluate(
        eval_config(
            ckpt, "metrics=[psnr,lpips]", "lpips_net=squeeze", f"lpips_weights_path={weights}"
        )
    )
    assert set(record["scores"]) == {"psnr", "lpips"}
    assert record["scores"]["lpips"] > 0
    assert "squeeze" in record["protocol"]["lpips"]


def test_eval_fid_only_when_asked(ckpt):
    record = evaluate(eval_config(ckpt, "metrics=[fid]", "feature_extractor=ganlab-tiny"))
    assert set(record["scores"]) == {"fid"} and record["scores"]["fid"] >= 0
    assert record["protocol"]["fid"]["reference"] == "the same items' targets"
    assert record["protocol"]["fid"]["feature_extractor"] == "ganlab-tiny"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["metrics=[is]"], "accepted metrics are ['psnr', 'ssim', 'l1_hole', 'psnr_hole'"),
        (["metrics=[psnr_hole]"], "need inpainting data; aligned is task 'paired'"),
        (["split=val"], "split='val' is not supported; accepted: 'train', 'test'"),
        (["metrics=[]"], "metrics=[] has no metric"),
        (["num_samples=0"], "num_samples=0 must be at least 1"),
        (["metrics=[fid]", "num_samples=1"], "FID needs at least 2 translated items"),
        (
            ["reference_split=test", "kid_subsets=5"],
            "reference_split=test kid_subsets=5: PairedTranslationGAN translates images and is "
            "scored against its data's paired targets",
        ),
    ],
)
def test_eval_refuses_what_does_not_apply(ckpt, overrides, expected):
    with pytest.raises(ConfigError, match=re.escape(expected)):
        evaluate(eval_config(ckpt, *overrides))


# ---------------------------------------------------------------------- the other tasks
class TensorPairs(GANDataModule):
    """Items of one image-to-image task served from tensors, with the interface's attributes."""

    eval_split = "test"
    default_feature_extractor = "ganlab-tiny"

    def __init__(self, task: str, items: dict[str, torch.Tensor]) -> None:
        super().__init__(batch_size=4)
        self.name, self.task, self.items = f"{task}_tensors", task, items
        self.data_key = "target" if "target" in items else "b"
        self.sample_shape = tuple(items[self.data_key].shape[1:])
        self.source_shape = tuple(items.get("source", items.get("a")).shape[1:])
        self.splits = ("train", "test")

    def _load(self, split: str) -> TensorDictDataset:
        return TensorDictDataset(**self.items)


def paired_model(generator, conditional_d: bool = True) -> PairedTranslationGAN:
    torch.manual_seed(0)
    adam = partial(torch.optim.Adam, lr=2e-4)
    channels = 6 if conditional_d else 3
    return PairedTranslationGAN(
        generator=generator,
        discriminator=PatchGANDiscriminator(channels, base_width=8, n_layers=2),
        loss=BCELoss(),
        g_optimizer=adam,
        d_optimizer=adam,
        conditional_d=conditional_d,
    ).eval()


def smooth_images(count: int, size: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, 4, 4, generator=generator) * 2 - 1
    return torch.nn.functional.interpolate(coarse, size=size, mode="bilinear")


def test_super_resolution_scores_the_y_channel_with_the_scale_as_border_crop():
    targets = smooth_images(5, SIZE)
    sources = torch.nn.functional.avg_pool2d(targets, 2)
    data = TensorPairs("sr", {"source": sources, "target": targets})
    model = paired_model(MSRResNet(3, base_width=8, num_blocks=1, scale=2), conditional_d=False)
    result = TranslationQuality(lpips_by_default=False, batch_size=2).evaluate(model, data)
    assert set(result.scores) == {"psnr", "ssim", "psnr_y", "ssim_y"}
    assert result.protocol["crop_border"] == 2 and "Y = 16" in result.protocol["channel"]
    # the Y channel of the 8-bit images, its border cropped, written out here
    weights = torch.tensor([65.481, 128.553, 24.966], dtype=torch.float64).view(1, 3, 1, 1)

    def luma(images: torch.Tensor) -> torch.Tensor:
        eight_bit = ((images.double().clamp(-1, 1) + 1) * 127.5).round()
        return (16 + (eight_bit * weights).sum(1) / 255)[:, 2:-2, 2:-2]

    mse = (luma(model.translate(sources)) - luma(targets)).pow(2).flatten(1).mean(1)
    assert result.scores["psnr_y"] == pytest.approx(float((10 * (255**2 / mse).log10()).mean()))
    rows, columns = translation_rows(model, [data.real_dataset("test")[0]])
    assert columns == 3 and rows.shape == (3, 3, SIZE, SIZE)  # the input enlarged to the target's


def test_gray_images_are_scored_as_gray_and_shown_beside_colour_outputs():
    targets = smooth_images(3, SIZE)[:, :1]
    data = TensorPairs("paired", {"source": -targets, "target": targets})
    model = paired_model(UnetGenerator(1, 1, num_downs=5, base_width=8))
    result = TranslationQuality(metrics=["psnr"]).evaluate(model, data)
    assert result.protocol["channel"].startswith("gray")
    assert result.scores["psnr"] == pytest.approx(psnr_8bit(model.translate(-targets), targets))
    colorizer = paired_model(UnetGenerator(1, 3, num_downs=5, base_width=8))
    item = {"source": targets[0], "target": smooth_images(1, SIZE)[0]}
    rows, columns = translation_rows(colorizer, [item])
    assert columns == 3 and rows.shape == (3, 3, SIZE, SIZE)
    assert torch.equal(rows[0, 0], rows[0, 1]) and torch.equal(rows[0, 0], targets[0, 0])


def test_test_mode_train_scores_are_seeded_and_leave_the_run_s_random_state():
    targets = smooth_images(4, 64)  # num_downs 6: one block with dropout
    data = TensorPairs("paired", {"source": -targets, "target": targets})
    generator = UnetGenerator(3, 3, num_downs=6, base_width=8, dropout=True)
    model = paired_model(generator)
    model.test_mode = "train"  # dropout on while scoring, as the pix2pix paper tests
    state = torch.random.get_rng_state()
    first = TranslationQuality(metrics=["psnr"], seed=1).evaluate(model, data).scores
    assert torch.equal(torch.random.get_rng_state(), state)
    again = TranslationQuality(metrics=["psnr"], seed=1).evaluate(model, data).scores
    other = TranslationQuality(metrics=["psnr"], seed=2).evaluate(model, data).scores
    assert first == again and first != other


def test_inpainting_scores_the_hole():
    targets = smooth_images(4, SIZE)
    masks = torch.zeros(4, 1, SIZE, SIZE)
    masks[..., 8:24, 8:24] = 1
    data = TensorPairs("inpainting", {"source": targets * (1 - masks), "target": targets})
    data.items["mask"] = masks
    model = paired_model(UnetGenerator(3, 3, num_downs=5, base_width=8))
    result = TranslationQuality(lpips_by_default=False).evaluate(model, data)
    assert set(result.scores) == {"psnr", "ssim", "l1_hole", "psnr_hole"}
    fake = ((model.translate(targets * (1 - masks)).double() + 1) * 127.5).round()
    real = ((targets.double() + 1) * 127.5).round()
    hole = (fake - real).abs()[..., 8:24, 8:24].flatten(1).mean(1) / 255
    assert result.scores["l1_hole"] == pytest.approx(float(hole.mean()))


def test_outputs_that_do_not_fit_the_targets_and_empty_splits_are_refused():
    model = paired_model(UnetGenerator(3, 3, num_downs=5, base_width=8))
    smaller = TensorPairs(
        "paired", {"source": smooth_images(2, SIZE), "target": smooth_images(2, 16)}
    )
    with pytest.raises(ConfigError, match=r"to \(3, 32, 32\), but the targets have shape \(3, 16"):
        TranslationQuality(metrics=["psnr"]).evaluate(model, smaller)
    empty = TensorPairs(
        "paired", {"source": torch.zeros(0, 3, SIZE, SIZE), "target": torch.zeros(0, 3, SIZE, SIZE)}
    )
    with pytest.raises(ConfigError, match="the test split of paired_tensors has no items"):
        TranslationQuality(metrics=["psnr"]).evaluate(model, empty)


def test_unpaired_test_sets_without_twins_are_scored_by_fid_alone():
    data = TensorPairs("unpaired", {"a": smooth_images(4, SIZE, 0), "b": smooth_images(4, SIZE, 1)})
    model = paired_model(UnetGenerator(3, 3, num_downs=5, base_width=8))
    result = TranslationQuality().evaluate(model, data)
    assert set(result.scores) == {"fid"}
    assert result.protocol["fid"]["reference"] == "the split's domain-B images"
    with pytest.raises(ConfigError, match="has no paired targets"):
        TranslationQuality(metrics=["psnr"]).evaluate(model, data)


# ---------------------------------------------------------------------- ganlab-sample
def sample_config(ckpt: Path, *overrides: str):
    return compose_config([f"ckpt_path={ckpt}", *overrides], ckpt.parent, "sample")


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_sample_translates_a_folder_in_name_order(ckpt, tmp_path):
    rng = np.random.default_rng(3)
    pictures = {name: rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for name in "cab"}
    for name, array in pictures.items():
        write_png(tmp_path / "in" / f"{name}.png", array)
    write_png(tmp_path / "in" / "d.jpg", pictures["a"][..., 0])  # gray, converted to RGB
    sample(sample_config(ckpt, f"inputs={tmp_path / 'in'}", f"out={tmp_path / 'out.npz'}"))
    with np.load(tmp_path / "out.npz") as arrays:
        assert list(arrays["names"]) == ["a.png", "b.png", "c.png", "d.jpg"]
        samples = arrays["samples"]
    assert samples.shape == (4, 3, SIZE, SIZE) and samples.dtype == np.float32
    assert samples.min() >= -1 and samples.max() <= 1
    model, _ = load_model(ckpt)
    inputs = torch.from_numpy(np.stack([pictures[n] for n in "abc"])).permute(0, 3, 1, 2)
    expected = model.translate(inputs.float() / 127.5 - 1)
    torch.testing.assert_close(torch.from_numpy(samples[:3]), expected)


def test_sample_writes_one_png_per_npz_image(ckpt, tmp_path):
    images = smooth_images(3, SIZE).numpy()
    np.savez(tmp_path / "in.npz", images=images)
    result = run_command(
        "ganlab-sample", f"ckpt_path={ckpt}", "inputs=in.npz", "out=outputs", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "outputs").iterdir()) == ["0.png", "1.png", "2.png"]
    model, _ = load_model(ckpt)
    expected = model.translate(torch.from_numpy(images))
    written = np.asarray(Image.open(tmp_path / "outputs" / "2.png"))
    assert np.array_equal(written, levels(expected[2]))
    assert f"wrote 3 translated images of shape (3, {SIZE}, {SIZE})" in result.stdout


def test_sample_inputs_of_several_sizes_go_to_a_folder_not_an_npz(ckpt, tmp_path):
    write_png(tmp_path / "in" / "small.png", np.zeros((SIZE, SIZE, 3), np.uint8))
    write_png(tmp_path / "in" / "wide.png", np.zeros((SIZE, 2 * SIZE, 3), np.uint8))
    sample(sample_config(ckpt, f"inputs={tmp_path / 'in'}", f"out={tmp_path / 'out'}"))
    assert Image.open(tmp_path / "out" / "wide.png").size == (2 * SIZE, SIZE)
    with pytest.raises(ConfigError, match="one PNG per input with out=FOLDER"):
        sample(sample_config(ckpt, f"inputs={tmp_path / 'in'}", f"out={tmp_path / 'o.npz'}"))


def bad_inputs(folder: Path) -> dict[str, tuple[list[str], str]]:
    """Each mistake: its command-line overrides and what the message must say."""
    folder.mkdir()
    (folder / "empty").mkdir()
    (folder / "broken").mkdir()
    (folder / "broken" / "x.png").write_bytes(b"not a png")
    (folder / "junk.npz").write_text("junk")
    for name in ("a.png", "a.jpg"):
        write_png(folder / "twins" / name, np.zeros((SIZE, SIZE, 3), np.uint8))
    good = smooth_images(2, SIZE).numpy()
    arrays = {
        "no_images": {"imgs": good},
        "uint8": {"images": np.zeros((2, 3, SIZE, SIZE), np.uint8)},
        "range": {"images": good * 3},
        "gray": {"images": good[:, :1]},
        "size": {"images": np.zeros((1, 3, 30, 30), np.float32)},
    }
    for name, contents in arrays.items():
        np.savez(folder / f"{name}.npz", **contents)
    given = {name: f"inputs={folder / f'{name}.npz'}" for name in arrays}
    return {
        "missing": ([f"inputs={folder / 'absent'}"], "does not exist; give a folder of images"),
        "empty": ([f"inputs={folder / 'empty'}"], "contains no images; accepted extensions"),
        "broken": ([f"inputs={folder / 'broken'}"], "cannot load image"),
        "junk": ([f"inputs={folder / 'junk.npz'}"], "is not an .npz archive"),
        "no_images": ([given["no_images"]], "holds arrays ['imgs']; accepted: `images`"),
        "uint8": ([given["uint8"]], "has dtype uint8; it must be float32 in [-1, 1]"),
        "range": ([given["range"]], "must be finite and in [-1, 1]"),
        "gray": ([given["gray"]], "the model takes (N, 3, H, W)"),
        "size": ([given["size"]], "size 30x30 do not fit UnetGenerator: height and width must"),
        "twins": ([f"inputs={folder / 'twins'}"], "a.jpg, a.png would write the same output"),
        "no_inputs": ([], "translates images: give them as inputs=FOLDER"),
        "num_samples": ([given["range"], "num_samples=4"], "num_samples=4 does not apply to"),
        "labels": ([given["range"], "labels=[1]"], "labels=[1] does not apply to"),
        "truncation": ([given["range"], "truncation=0.5"], "truncation=0.5 does not apply to"),
        "standing_stats": ([given["range"], "standing_stats=4"], "standing_stats=4 does not apply"),
        "png": ([f"inputs={folder / 'empty'}", "out=grid.png"], "writes a .npz (out=outputs.npz)"),
    }


def test_sample_input_mistakes_are_clear_errors(ckpt, tmp_path):
    for case, (overrides, expected) in bad_inputs(tmp_path / "inputs").items():
        if not any(o.startswith("out=") for o in overrides):
            overrides = [*overrides, f"out={tmp_path / 'o.npz'}"]
        with pytest.raises(ConfigError) as raised:
            sample(sample_config(ckpt, *overrides))
        assert expected in str(raised.value), case
    assert not (tmp_path / "o.npz").exists()


def test_sample_refuses_inputs_for_a_latent_model(tmp_path):
    run = tmp_path / "dcgan"
    train(compose_config([*FAST, *SMALL_DCGAN, "trainer.limit_train_batches=1"], run))
    np.savez(tmp_path / "in.npz", images=np.zeros((1, 1, 32, 32), np.float32))
    latent_ckpt = run / "checkpoints" / "last.ckpt"
    with pytest.raises(ConfigError) as raised:
        sample(sample_config(latent_ckpt, f"inputs={tmp_path / 'in.npz'}"))
    assert "(GANModule) draws samples from latents and takes no images" in str(raised.value)
    assert "leave inputs out and set num_samples=N" in str(raised.value)


@pytest.fixture(scope="module")
def inpainting_ckpt(tmp_path_factory):
    """One short epoch of the gated-conv inpainting model on the synthetic photo set."""
    run = tmp_path_factory.mktemp("inpainting")
    small = ["data.num_train=16", "data.num_test=8", "data.batch_size=4"]
    widths = ["model.generator.base_width=8", "model.discriminator.base_width=8"]
    cfg = compose_config([*FAST, "experiment=inpaint_photos", *small, *widths], run)
    train(cfg)
    return run / "checkpoints" / "last.ckpt"


def test_eval_of_an_inpainting_run_scores_the_hole_with_the_mask_set(inpainting_ckpt):
    record = evaluate(eval_config(inpainting_ckpt, "metrics=null"))
    assert set(record["scores"]) >= {"psnr", "ssim", "l1_hole", "psnr_hole"}
    made = record["protocol"]["data_protocol"]  # PROTOCOL.json of the synthetic set
    assert made["parameters"]["task"] == "inpaint" and "free_form" in made["masks"]
    assert record["protocol"]["count"] == 8


def test_sample_masks_for_an_inpainting_model(inpainting_ckpt, tmp_path):
    images = smooth_images(2, 64).numpy()
    masks = np.zeros((2, 1, 64, 64), np.float32)
    masks[..., 16:32, 16:32] = 1
    write_png(tmp_path / "folder" / "a.png", np.zeros((64, 64, 3), np.uint8))
    cases = {
        "folder": (None, "is a folder of images, but the model fills holes and needs"),
        "none": ({"images": images}, "has no `masks`; the model fills holes"),
        "shape": ({"images": images, "masks": masks[:, :, :16]}, "`masks` has shape (2, 1, 16"),
        "values": ({"images": images, "masks": masks * 0.5}, "hold 0 (known) or 1 (missing)"),
    }
    for case, (arrays, expected) in cases.items():
        inputs = tmp_path / "folder" if arrays is None else tmp_path / f"{case}.npz"
        if arrays is not None:
            np.savez(inputs, **arrays)
        overrides = (f"inputs={inputs}", f"out={tmp_path / 'o.npz'}")
        with pytest.raises(ConfigError, match=re.escape(expected)):
            sample(sample_config(inpainting_ckpt, *overrides))
    np.savez(tmp_path / "good.npz", images=images, masks=masks)
    good = (f"inputs={tmp_path / 'good.npz'}", f"out={tmp_path / 'o.npz'}")
    sample(sample_config(inpainting_ckpt, *good))
    with np.load(tmp_path / "o.npz") as arrays:
        filled = arrays["samples"]
    known = masks == 0  # the known pixels come back exactly, only the hole is filled
    assert np.array_equal(np.broadcast_to(known, filled.shape) * filled, known * images)
