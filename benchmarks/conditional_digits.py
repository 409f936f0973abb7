"""Does a class-conditional GAN draw the digit it is asked for? (`experiment=cgan_digits`)

Trains `ganlab-train experiment=cgan_digits` (or takes `--ckpt`), draws `--per-class` samples
of each digit from the EMA generator (seed 0, latent i from (0, i)), and classifies them with
`ganlab-digits`, the classifier trained on the digits' held-out split (never the GAN's training
images). Prints the fraction of samples classified as their conditioning label, overall and per
class, the classifier's accuracy on the real training split (the ceiling), the within-class
spread of the samples relative to the real images' (a class collapsed to copies of one image
classifies perfectly and has a spread near 0), the wall times, and the path of a
one-row-per-class sample grid.

    python benchmarks/conditional_digits.py [--ckpt PATH] [--per-class 1000] [overrides ...]

Extra arguments are Hydra overrides for the training run (e.g. trainer.max_epochs=20).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torchvision.utils import make_grid, save_image

from ganlab.callbacks.sample_grid import class_grid_samples
from ganlab.checkpoint import load_model
from ganlab.metrics.extractors import DigitsExtractor, digits_uint8

EXPERIMENT = "cgan_digits"
SEED = 0


def train_run(run_dir: Path, overrides: list[str]) -> tuple[Path, float]:
    """Train the experiment as a user would; returns (last.ckpt, wall seconds)."""
    script = Path(sys.executable).with_name("ganlab-train")
    command = [str(script), f"experiment={EXPERIMENT}", f"hydra.run.dir={run_dir}", *overrides]
    print("training:", " ".join(command[1:]), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True)
    return run_dir / "checkpoints" / "last.ckpt", time.perf_counter() - start


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats -> uint8, as a PNG save would quantize them."""
    return ((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


@torch.no_grad()
def classify(classifier: DigitsExtractor, images: torch.Tensor, batch: int = 500):
    """(predicted labels, features) of uint8 images."""
    outputs = [classifier(chunk) for chunk in images.split(batch)]
    logits = torch.cat([logits for logits, _ in outputs])
    return logits.argmax(dim=1), torch.cat([features for _, features in outputs])


def spread(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Mean pairwise feature distance within each class, shape (num_classes,)."""
    means = []
    for k in range(num_classes):
        f = features[labels == k]
        means.append(torch.cdist(f, f).sum() / (len(f) * (len(f) - 1)))
    return torch.stack(means)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", type=Path, help="a trained cgan checkpoint (skips training)")
    parser.add_argument("--run-dir", type=Path, help="where to train (default: a temp dir)")
    parser.add_argument("--per-class", type=int, default=1000, help="samples of each digit")
    args, overrides = parser.parse_known_args()

    train_seconds = None
    ckpt = args.ckpt
    if ckpt is None:
        run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix="ganlab-cgan-digits-"))
        ckpt, train_seconds = train_run(run_dir.resolve(), overrides)

    start = time.perf_counter()
    model, config = load_model(ckpt, "cpu")
    num_classes = model.num_classes
    classifier = DigitsExtractor("ganlab-digits", ["logits", "features"])
    images, labels = digits_uint8("train")
    predicted, real_features = classify(classifier, images)
    real_accuracy = (predicted == labels).float().mean().item()

    wanted = torch.arange(num_classes).repeat_interleave(args.per_class)
    samples = model.sample(len(wanted), labels=wanted, seed=SEED, use_ema=True)
    predicted, features = classify(classifier, to_uint8(samples.cpu()))
    hits = (predicted == wanted).float()
    relative_spread = spread(features, wanted, num_classes) / spread(
        real_features, labels, num_classes
    )
    eval_seconds = time.perf_counter() - start

    grid_path = ckpt.parent.parent / "class_grid.png"
    grid = class_grid_samples(model, per_class=10, seed=SEED)
    save_image(make_grid(grid, nrow=10, normalize=True, value_range=(-1, 1)), grid_path)

    ema = "EMA" if model.generator_ema is not None else "raw"
    print(f"checkpoint: {ckpt}")
    print(
        f"{len(wanted)} samples ({args.per_class} per class, {ema} generator, seed {SEED}) "
        f"classified by ganlab-digits; its accuracy on the real train split: {real_accuracy:.4f}"
    )
    print(f"conditional accuracy: {hits.mean().item():.4f}")
    per_class = hits.view(num_classes, args.per_class).mean(dim=1)
    print("per class: " + "  ".join(f"{k}:{acc:.3f}" for k, acc in enumerate(per_class.tolist())))
    print(
        f"within-class spread (ganlab-digits features, samples / real): "
        f"{relative_spread.mean().item():.3f}; per class: "
        + "  ".join(f"{k}:{r:.2f}" for k, r in enumerate(relative_spread.tolist()))
    )
    if train_seconds is not None:
        epochs = config.trainer.max_epochs
        print(f"training wall time: {train_seconds:.1f} s ({epochs} epochs, evaluations included)")
    print(f"sampling + classification wall time: {eval_seconds:.1f} s")
    print(f"per-class grid: {grid_path}")


if __name__ == "__main__":
    main()
