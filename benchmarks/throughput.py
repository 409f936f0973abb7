"""Training throughput of ganlab's DCGAN step against the textbook PyTorch loop.

Both sides use the same networks (same initial weights), batch, data loader, Adam settings and
losses (BCE with the non-saturating generator loss, the fakes of the D step reused in the G
step). The only differences are ganlab's: Lightning's loop, per-step logging, NaN checks, and
the discriminator frozen during the generator step (no gradients for its weights).

    python benchmarks/throughput.py [--batch-size 64] [--steps 40] [--repeats 3]

Prints images/s of each side (median over repeats, run alternately) and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from ganlab.data import DigitsDataModule
from ganlab.losses import BCELoss
from ganlab.models import GANModule
from ganlab.networks import DCGANDiscriminator, DCGANGenerator

LATENT_DIM = 100


def make_networks(channels: int, resolution: int, seed: int):
    torch.manual_seed(seed)
    return (
        DCGANGenerator(LATENT_DIM, channels, resolution),
        DCGANDiscriminator(channels, resolution),
    )


def adam(params):
    return torch.optim.Adam(params, lr=2e-4, betas=(0.5, 0.999))


def make_datamodule(args) -> DigitsDataModule:
    datamodule = DigitsDataModule(
        resolution=args.resolution, channels=args.channels, batch_size=args.batch_size
    )
    datamodule.setup("fit")
    return datamodule


def plain_loop(args) -> float:
    """The textbook alternating loop (as in PyTorch's DCGAN tutorial); returns images/s."""
    generator, discriminator = make_networks(args.channels, args.resolution, args.seed)
    g_opt, d_opt = adam(generator.parameters()), adam(discriminator.parameters())
    bce = F.binary_cross_entropy_with_logits
    loader = make_datamodule(args).train_dataloader()
    done, start = 0, None
    while done < args.warmup + args.steps:
        for batch in loader:
            if done == args.warmup:
                start = time.perf_counter()
            real = batch["image"]
            fake = generator(torch.randn(real.shape[0], LATENT_DIM))
            real_logits = discriminator(real)
            fake_logits = discriminator(fake.detach())
            d_loss = bce(real_logits, torch.ones_like(real_logits)) + bce(
                fake_logits, torch.zeros_like(fake_logits)
            )
            d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            d_opt.step()
            fake_logits = discriminator(fake)
            g_loss = bce(fake_logits, torch.ones_like(fake_logits))
            g_opt.zero_grad(set_to_none=True)
            g_loss.backward()
            g_opt.step()
            done += 1
            if done == args.warmup + args.steps:
                break
    return args.steps * args.batch_size / (time.perf_counter() - start)


class StepTimer(pl.Callback):
    def __init__(self, warmup: int):
        self.warmup = warmup
        self.start: float | None = None
        self.end: float | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.start is None and pl_module.d_steps == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.end = time.perf_counter()


def ganlab_loop(args) -> float:
    generator, discriminator = make_networks(args.channels, args.resolution, args.seed)
    model = GANModule(
        generator, discriminator, BCELoss(), adam, adam, latent_dim=LATENT_DIM, ema_decay=None
    )
    timer = StepTimer(args.warmup)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=2 * (args.warmup + args.steps),  # global_step counts both optimizers
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    trainer.fit(model, datamodule=make_datamodule(args))
    return args.steps * args.batch_size / (timer.end - timer.start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=40, help="timed batches per measurement")
    parser.add_argument("--warmup", type=int, default=5, help="untimed batches first")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    results: dict[str, list[float]] = {"plain PyTorch loop": [], "ganlab GANModule": []}
    for _ in range(args.repeats):  # alternate, so drift in machine load hits both sides
        results["plain PyTorch loop"].append(plain_loop(args))
        results["ganlab GANModule"].append(ganlab_loop(args))

    print(
        f"DCGAN {args.channels}x{args.resolution}x{args.resolution}, batch {args.batch_size}, "
        f"{args.steps} timed steps x {args.repeats} repeats, CPU threads "
        f"{torch.get_num_threads()}, torch {torch.__version__}"
    )
    medians = {}
    for name, values in results.items():
        medians[name] = statistics.median(values)
        runs = ", ".join(f"{v:.1f}" for v in values)
        print(f"{name:>20}: {medians[name]:7.1f} images/s (median; runs: {runs})")
    ratio = medians["ganlab GANModule"] / medians["plain PyTorch loop"]
    print(f"{'ratio ganlab/plain':>20}: {ratio:.3f}x")


if __name__ == "__main__":
    main()
