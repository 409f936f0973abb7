"""Classification accuracy score (CAS; Ravuri & Vinyals, 2019): train a fixed classifier on a
conditional generator's samples alone, with balanced labels and as many images as the real
training split, and report its accuracy on the real held-out split.

The same parts train every arm of `ganlab-augment` (real, synthetic, mixed, low-data): one
classifier (`SmallCNN`) and one recipe (`ClassifierRecipe`), so arms differ in their data only.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ganlab.data.base import collate_batch
from ganlab.errors import ConfigError
from ganlab.networks.classifier import SmallCNN

CAS = "cas"
HELDOUT_SPLITS = ("test", "val")  # the first the data has (other than its training split)


@dataclass
class LabelledImages:
    images: torch.Tensor  # (N, C, H, W) float in [-1, 1]
    labels: torch.Tensor  # (N,) int64

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index: torch.Tensor | slice) -> LabelledImages:
        return LabelledImages(self.images[index], self.labels[index])

    def __add__(self, other: LabelledImages) -> LabelledImages:
        return LabelledImages(
            torch.cat([self.images, other.images.to(self.images)]),
            torch.cat([self.labels, other.labels.to(self.labels)]),
        )


@dataclass
class ClassifierRecipe:
    """How every arm's classifier trains. Every arm takes the same number of steps,
    `epochs` x ceil(real training count / batch_size), whatever its size: an arm differs from
    another in its data, not in its compute."""

    epochs: int = 10  # passes over as many images as the real training split holds
    batch_size: int = 64
    lr: float = 2e-3  # Adam's peak learning rate, reached by a one-cycle schedule
    width: int = 16  # SmallCNN's first block's channels

    def __post_init__(self) -> None:
        for key in ("epochs", "batch_size", "width"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{key}={value!r} must be a positive integer")
        if isinstance(self.lr, bool) or not isinstance(self.lr, int | float) or self.lr <= 0:
            raise ConfigError(f"lr={self.lr!r} must be a number > 0")

    def steps(self, real_count: int) -> int:
        return self.epochs * math.ceil(real_count / self.batch_size)

    def protocol(self, shape: tuple[int, ...], num_classes: int, real_count: int) -> dict:
        net = SmallCNN(shape[0], shape[1], num_classes, self.width)
        return {
            "name": "SmallCNN (ganlab.networks.classifier)",
            "architecture": " ".join(str(net).split()),
            "parameters": sum(p.numel() for p in net.parameters()),
            **asdict(self),
            "steps": self.steps(real_count),
            "optimizer": "Adam (betas 0.9, 0.999), one-cycle learning-rate schedule",
            "augmentation": "none",
            "initialisation": "PyTorch's default, drawn from the seed",
        }


def require_conditional(model, command: str) -> None:
    """Class-labelled samples need a conditional generator."""
    if not getattr(model, "conditional", False):
        raise ConfigError(
            f"{command} needs a class-conditional generator, but the checkpoint's model "
            f"({type(model).__name__}) is unconditional; give a checkpoint of a conditional model "
            "trained on labelled data (model=cgan, model=cgan_mlp, model=sngan_projection, or "
            "model=stylegan2 on labelled data)"
        )


def heldout_split(datamodule) -> str:
    """The split scores are tested on: the data's test (else val) split."""
    splits = tuple(getattr(datamodule, "splits", ()))
    train = getattr(datamodule, "train_split", "train")
    for split in HELDOUT_SPLITS:
        if split in splits and split != train:
            return split
    raise ConfigError(
        f"{getattr(datamodule, 'name', 'the data')} has splits {list(splits)} and trains on "
        f"{train!r}: a classifier needs a real held-out split ({' or '.join(HELDOUT_SPLITS)}) "
        "to be tested on"
    )


def labelled_split(datamodule, split: str) -> LabelledImages:
    """All images and labels of a real split, on the CPU."""
    dataset = datamodule.real_dataset(split)
    name = getattr(datamodule, "name", "the data")
    key = getattr(datamodule, "data_key", "image")
    tensors = getattr(dataset, "tensors", None)  # in memory already: no loader needed
    batches = (
        [tensors] if tensors is not None else DataLoader(dataset, 500, collate_fn=collate_batch)
    )
    images, labels = [], []
    for batch in batches:
        if "label" not in batch or getattr(datamodule, "num_classes", None) is None:
            raise ConfigError(
                f"{name} ({split} split) has no class labels; a classifier needs labelled data "
                "(e.g. data=digits, data=mnist, data=cifar10)"
            )
        images.append(batch[key].float())
        labels.append(batch["label"].long())
    return LabelledImages(torch.cat(images), torch.cat(labels))


def cas_generated_count(datamodule) -> int:
    """The generated images each CAS classifier trains on: as many as the real training split
    holds."""
    return len(datamodule.real_dataset(datamodule.train_split))


def balanced_labels(count: int, num_classes: int) -> torch.Tensor:
    """Sample i has label i % num_classes, as `ConditionalGAN.sample_labels` draws them."""
    return torch.arange(count) % num_classes


def generate(
    model, count: int, seed: int, use_ema: bool, batch_size: int = 256, **sampling: Any
) -> LabelledImages:
    """`count` samples with balanced labels; latent i comes from (seed, i)."""
    labels = balanced_labels(count, model.num_classes)
    images = model.sample(
        count, labels=labels, seed=seed, use_ema=use_ema, batch_size=batch_size, **sampling
    )
    return LabelledImages(images.cpu().clamp(-1, 1), labels)


def train_and_test(
    train: LabelledImages,
    test: LabelledImages,
    num_classes: int,
    recipe: ClassifierRecipe,
    steps: int,
    seed: int,
    device: torch.device | str = "cpu",
) -> float:
    """Accuracy on `test` of a SmallCNN trained for `steps` batches of `train` (reshuffled at
    every pass), all randomness drawn from `seed`."""
    device = torch.device(device)
    # The caller's random streams (a training run's) go on as if no classifier had trained.
    forked = [device] if device.type == "cuda" else []
    # Grad on even where the caller runs under inference mode (Lightning's evaluation hooks).
    with (
        torch.inference_mode(False),
        torch.enable_grad(),
        torch.random.fork_rng(devices=forked),
    ):
        torch.manual_seed(seed)
        _, channels, resolution, _ = train.images.shape
        net = SmallCNN(channels, resolution, num_classes, recipe.width).to(device)
        optimizer = torch.optim.Adam(net.parameters(), lr=recipe.lr)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, recipe.lr, total_steps=steps)
        # Own copies: tensors made under inference mode cannot be saved for backward.
        images, labels = train.images.to(device).clone(), train.labels.to(device).clone()
        order = torch.Generator().manual_seed(seed)
        batches: list[torch.Tensor] = []
        for _ in range(steps):
            if not batches:  # a new pass over the arm's images, in a new order
                batches = list(torch.randperm(len(train), generator=order).split(recipe.batch_size))
            batch = batches.pop(0).to(device)
            loss = F.cross_entropy(net(images[batch]), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    with torch.no_grad():
        correct = sum(
            (net(x.to(device)).argmax(dim=1).cpu() == y).sum().item()
            for x, y in zip(test.images.split(500), test.labels.split(500), strict=True)
        )
    return correct / len(test)


def summary(accuracies: list[float]) -> dict[str, Any]:
    """Mean and sample standard deviation (n - 1; 0 for one seed) of per-seed accuracies."""
    std = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
    return {"accuracy": accuracies, "mean": statistics.fmean(accuracies), "std": std}


def classification_accuracy_score(
    model,
    datamodule,
    seeds: list[int],
    recipe: ClassifierRecipe,
    use_ema: bool = True,
    batch_size: int = 256,
    **sampling: Any,  # e.g. truncation=0.7 for the models that take it
) -> tuple[dict[str, float], dict[str, Any]]:
    """({"cas": mean accuracy, "cas_std": ...}, protocol): classifiers trained on as many
    generated images (balanced labels; latent i from (seed, i)) as the real training split holds,
    tested on the real held-out split, one per seed."""
    require_conditional(model, "metrics=[cas]")
    test_split = heldout_split(datamodule)
    real = labelled_split(datamodule, datamodule.train_split)
    test = labelled_split(datamodule, test_split)
    steps = recipe.steps(len(real))
    accuracies = []
    for seed in seeds:
        synthetic = generate(model, len(real), seed, use_ema, batch_size, **sampling)
        accuracies.append(
            train_and_test(synthetic, test, model.num_classes, recipe, steps, seed, model.device)
        )
    result = summary(accuracies)
    shape = tuple(real.images.shape[1:])
    protocol = {
        "definition": "accuracy on real held-out data of a classifier trained on generated "
        "data alone (Ravuri & Vinyals, 2019)",
        "classifier": recipe.protocol(shape, model.num_classes, len(real)),
        "generated_count": len(real),
        "labels": f"balanced: sample i has label i % {model.num_classes}",
        "latent_seeds": list(seeds),
        "test_split": test_split,
        "test_count": len(test),
        "per_seed_accuracy": result["accuracy"],
        "std": "sample standard deviation over seeds (n - 1; 0 for one seed)",
    }
    return {CAS: result["mean"], f"{CAS}_std": result["std"]}, protocol
