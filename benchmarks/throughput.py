"""Training throughput of ganlab's GANModule against the textbook PyTorch loop, and of each speed
switch (docs/speed.md).

Both sides use the same networks (same initial weights), data, Adam settings and losses (BCE with
the non-saturating generator loss, the fakes of the D step reused in the G step). Images are
random, held in CPU memory (pinned for CUDA) and fetched one index list per batch by the same
DataLoader. What differs is ganlab's: Lightning's loop, logging, NaN checks, the discriminator
frozen during the generator step, and, on CUDA, fused Adam.

    python benchmarks/throughput.py --device cuda            # the table: batch 64/256/1024
    python benchmarks/throughput.py --device cuda --sweep    # each switch, dcgan 64 and sngan 32
    python benchmarks/throughput.py --device cpu             # small CPU defaults (minutes)

Images/s are medians over repeats, the two sides run alternately. Peak memory: CUDA
`torch.cuda.max_memory_allocated`; CPU the peak resident set size of the process during the
row (sampled every 10 ms, minus the size before the row). The FLOP share divides the FLOPs of
one step (torch.utils.flop_counter, per image) times images/s by --peak-tflops.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import statistics
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler
from torch.utils.flop_counter import FlopCounterMode

from ganlab.losses import BCELoss, HingeLoss
from ganlab.models import GANModule
from ganlab.networks import (
    DCGANDiscriminator,
    DCGANGenerator,
    ResNetDiscriminator,
    ResNetGenerator,
)

# H200 dense bf16 tensor-core peak (NVIDIA's datasheet: 1,979 TFLOP/s with sparsity).
H200_BF16_TFLOPS = 989.0
SWITCHES = ("channels_last", "compile", "fused_adam", "tf32")


@dataclass(frozen=True)
class Setup:
    model: str  # dcgan or sngan
    channels: int
    resolution: int
    base_width: int | None  # None: the network's default
    batch_size: int
    precision: str = "32-true"  # Lightning's name; the plain loop's bf16 is autocast
    channels_last: bool = False
    compile: bool = False
    fused_adam: bool = False
    tf32: bool = False

    def latent_dim(self) -> int:
        return 100 if self.model == "dcgan" else 128


def make_networks(setup: Setup, seed: int):
    torch.manual_seed(seed)
    width = {} if setup.base_width is None else {"base_width": setup.base_width}
    if setup.model == "dcgan":
        generator = DCGANGenerator(setup.latent_dim(), setup.channels, setup.resolution, **width)
        return generator, DCGANDiscriminator(setup.channels, setup.resolution, **width)
    generator = ResNetGenerator(setup.latent_dim(), setup.channels, setup.resolution, **width)
    discriminator = ResNetDiscriminator(
        setup.channels, setup.resolution, spectral_norm=True, **width
    )
    return generator, discriminator


def adam_factory(setup: Setup):
    betas = (0.5, 0.999) if setup.model == "dcgan" else (0.0, 0.9)
    # fused=False unless switched on: ganlab alone would pick fused Adam on CUDA by itself.
    return functools.partial(torch.optim.Adam, lr=2e-4, betas=betas, fused=setup.fused_adam)


class RandomImages(Dataset):
    """N random images in [-1, 1]; item `indices` is a whole batch, one index list per fetch."""

    def __init__(self, setup: Setup, count: int):
        generator = torch.Generator().manual_seed(1)
        shape = (count, setup.channels, setup.resolution, setup.resolution)
        self.images = torch.rand(shape, generator=generator) * 2 - 1
        self.labels = torch.randint(10, (count,), generator=generator)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, indices):
        # Labels too, for the class-conditional families (--families); others ignore them.
        return {"image": self.images[indices], "label": self.labels[indices]}


def make_loader(setup: Setup, device: str) -> DataLoader:
    dataset = RandomImages(setup, count=max(4 * setup.batch_size, 1024))
    sampler = BatchSampler(RandomSampler(dataset), setup.batch_size, drop_last=True)
    return DataLoader(dataset, sampler=sampler, batch_size=None, pin_memory=device == "cuda")


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def autocast(setup: Setup, device: str):
    if setup.precision == "bf16-mixed":
        return torch.autocast(device, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def plain_step(generator, discriminator, g_opt, d_opt, real, setup: Setup, device: str) -> None:
    """The textbook alternating step (PyTorch's DCGAN tutorial)."""
    bce = F.binary_cross_entropy_with_logits
    with autocast(setup, device):
        fake = generator(torch.randn(real.shape[0], setup.latent_dim(), device=device))
        real_logits = discriminator(real).float()
        fake_logits = discriminator(fake.detach()).float()
    d_loss = bce(real_logits, torch.ones_like(real_logits)) + bce(
        fake_logits, torch.zeros_like(fake_logits)
    )
    d_opt.zero_grad(set_to_none=True)
    d_loss.backward()
    d_opt.step()
    with autocast(setup, device):
        fake_logits = discriminator(fake).float()
    g_loss = bce(fake_logits, torch.ones_like(fake_logits))
    g_opt.zero_grad(set_to_none=True)
    g_loss.backward()
    g_opt.step()


def plain_loop(setup: Setup, args) -> float:
    """Images/s of the textbook loop."""
    generator, discriminator = (n.to(args.device) for n in make_networks(setup, args.seed))
    factory = adam_factory(setup)
    g_opt, d_opt = factory(generator.parameters()), factory(discriminator.parameters())
    done, start = 0, None
    while done < args.warmup + args.steps:
        for batch in make_loader(setup, args.device):
            if done == args.warmup:
                synchronize(args.device)
                start = time.perf_counter()
            real = batch["image"].to(args.device, non_blocking=True)
            plain_step(generator, discriminator, g_opt, d_opt, real, setup, args.device)
            done += 1
            if done == args.warmup + args.steps:
                break
    synchronize(args.device)
    return args.steps * setup.batch_size / (time.perf_counter() - start)


class StepTimer(pl.Callback):
    """Times D steps warmup..warmup+steps, synchronizing the device only at both ends."""

    def __init__(self, warmup: int, steps: int, device: str):
        self.warmup, self.last, self.device = warmup, warmup + steps, device
        self.start: float | None = None
        self.end: float | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.start is None and pl_module.d_steps == self.warmup:
            synchronize(self.device)
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if pl_module.d_steps == self.last:
            synchronize(self.device)
            self.end = time.perf_counter()


class Batches(pl.LightningDataModule):
    def __init__(self, setup: Setup, device: str):
        super().__init__()
        self.setup_, self.device = setup, device

    def train_dataloader(self):
        return make_loader(self.setup_, self.device)


def ganlab_loop(setup: Setup, args) -> float:
    """Images/s of GANModule under Lightning."""
    generator, discriminator = make_networks(setup, args.seed)
    factory = adam_factory(setup)
    loss = BCELoss() if setup.model == "dcgan" else HingeLoss()
    model = GANModule(
        generator,
        discriminator,
        loss,
        factory,
        factory,
        latent_dim=setup.latent_dim(),
        ema_decay=None,
        channels_last=setup.channels_last,
        compile=setup.compile,
    )
    return fit_throughput(model, setup, args)


def fit_throughput(model: GANModule, setup: Setup, args) -> float:
    timer = StepTimer(args.warmup, args.steps, args.device)
    trainer = pl.Trainer(
        accelerator="gpu" if args.device == "cuda" else "cpu",
        devices=1,
        precision=setup.precision,
        max_steps=2 * (args.warmup + args.steps),  # global_step counts both optimizers
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    trainer.fit(model, datamodule=Batches(setup, args.device))
    return args.steps * setup.batch_size / (timer.end - timer.start)


def flops_per_image(setup: Setup) -> float:
    """FLOPs of one textbook training step (both players, forward and backward) per image,
    counted on the CPU at batch 2 (convolution and matmul FLOPs scale with the batch)."""
    generator, discriminator = make_networks(setup, 0)
    factory = adam_factory(replace(setup, fused_adam=False))
    g_opt, d_opt = factory(generator.parameters()), factory(discriminator.parameters())
    real = torch.zeros(2, setup.channels, setup.resolution, setup.resolution)
    counter = FlopCounterMode(display=False)
    with counter:
        fp32 = replace(setup, precision="32-true")
        plain_step(generator, discriminator, g_opt, d_opt, real, fp32, "cpu")
    return counter.get_total_flops() / 2


class PeakMemory:
    """Peak memory of the block: CUDA allocator peak, or the process's RSS growth on a CPU."""

    def __init__(self, device: str):
        self.device, self.peak, self._stop = device, 0, threading.Event()

    @staticmethod
    def rss() -> int:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * 4096

    def _poll(self, base: int) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.rss() - base)

    def __enter__(self):
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        else:
            self._thread = threading.Thread(target=self._poll, args=(self.rss(),), daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.device == "cuda":
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            self._thread.join()


@contextlib.contextmanager
def matmul_precision(tf32: bool):
    previous = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    torch.backends.cudnn.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous[0])
        torch.backends.cudnn.allow_tf32 = previous[1]


def measure(run, setup: Setup, args) -> tuple[list[float], int]:
    values, peak = [], 0
    for _ in range(args.repeats):
        with matmul_precision(setup.tf32), PeakMemory(args.device) as memory:
            values.append(run(setup, args))
        peak = max(peak, memory.peak)
    return values, peak


def row(name: str, values: list[float], peak: int, flops: float, args) -> str:
    median = statistics.median(values)
    share = median * flops / (args.peak_tflops * 1e12)
    runs = ", ".join(f"{v:,.0f}" for v in values)
    counted = flops == flops  # NaN: not counted (--families)
    flop_cells = f"{flops / 1e9:.2f} | {100 * share:.3f}%" if counted else "- | -"
    return f"| {name} | {median:,.1f} | {runs} | {peak / 2**20:,.0f} MiB | {flop_cells} |"


HEADER = (
    "| variant | images/s (median) | runs | peak memory | GFLOP/image/step | "
    "share of peak |\n|---|---|---|---|---|---|"
)


def table(args) -> None:
    print(f"\n## plain loop vs ganlab, DCGAN {args.channels}x{args.resolution}x{args.resolution}")
    for batch_size in args.batch_sizes:
        base = Setup("dcgan", args.channels, args.resolution, args.base_width, batch_size)
        flops = flops_per_image(base)
        variants = {
            "plain loop fp32": (plain_loop, base),
            "plain loop bf16 autocast": (plain_loop, replace(base, precision="bf16-mixed")),
            "ganlab 32-true": (ganlab_loop, base),
            "ganlab bf16-mixed": (ganlab_loop, replace(base, precision="bf16-mixed")),
        }
        results = {name: ([], 0) for name in variants}
        for _ in range(args.repeats):  # alternate, so drift in machine load hits every side
            for name, (run, setup) in variants.items():
                values, peak = measure(run, setup, replace_args(args, repeats=1))
                results[name] = (results[name][0] + values, max(results[name][1], peak))
        print(f"\nbatch {batch_size}\n{HEADER}")
        for name, (values, peak) in results.items():
            print(row(name, values, peak, flops, args))
        pairs = {"fp32": ("plain loop fp32", "ganlab 32-true")}
        pairs["bf16"] = ("plain loop bf16 autocast", "ganlab bf16-mixed")
        for precision, (plain, ours) in pairs.items():
            ratio = statistics.median(results[ours][0]) / statistics.median(results[plain][0])
            print(f"ratio ganlab/plain {precision}, batch {batch_size}: {ratio:.3f}x")


def replace_args(args, **changes):
    return argparse.Namespace(**{**vars(args), **changes})


def sweep(args) -> None:
    models = {
        "dcgan 64": Setup("dcgan", 3, 64, args.base_width, args.sweep_batch_size),
        "sngan 32": Setup("sngan", 3, 32, args.base_width, args.sweep_batch_size),
    }
    for title, base in models.items():
        base = replace(base, precision=args.sweep_precision)
        flops = flops_per_image(base)
        print(f"\n## ganlab switches, {title}, batch {base.batch_size}, {base.precision}\n{HEADER}")
        variants = {"as built (no switch)": base}
        for switch in args.switches:
            variants[f"+ {switch}"] = replace(base, **{switch: True})
        if len(args.switches) > 1:
            variants["all of them"] = replace(base, **{s: True for s in args.switches})
        for name, setup in variants.items():
            values, peak = measure(ganlab_loop, setup, args)
            print(row(name, values, peak, flops, args))


def families(args) -> None:
    """ganlab alone on the bigger families' CIFAR-10 recipes (random 3x32x32 images, their own
    networks, losses and optimizers)."""
    import tempfile

    from hydra.utils import instantiate

    from ganlab.cli import compose_run

    print(f"\n## families at CIFAR-10 size, batch {args.family_batch_size}\n{HEADER}")
    for family in args.families:
        for name, overrides in family_rows(family):
            cfg = compose_run([f"experiment={family}_cifar10", *overrides], tempfile.mkdtemp())
            setup = Setup(family, cfg.data.channels, cfg.data.resolution, None, 0)
            setup = replace(setup, batch_size=args.family_batch_size, precision=args.precision)

            def run(setup, args, cfg=cfg):
                return fit_throughput(instantiate(cfg.model), setup, args)

            values, peak = measure(run, setup, args)
            print(row(name, values, peak, float("nan"), args))


def family_rows(family: str) -> list[tuple[str, list[str]]]:
    """(row name, overrides) of a family's rows. ProGAN grows by images seen: its recipe's
    first steps run at 4x4, so a second row shrinks the schedule to one image per phase, and the
    warm-up steps carry it to its last level (32x32), where a run ends."""
    if family != "progan":
        return [(family, [])]
    one_image = "0.001"  # kimg
    top_level = [f"model.stable_kimg={one_image}", f"model.fade_kimg={one_image}"]
    return [("progan, first level (4x4)", []), ("progan, last level (32x32)", top_level)]


def load() -> str:
    with contextlib.suppress(OSError):
        return "load average " + " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "load average unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--sweep", action="store_true", help="each switch, dcgan 64 and sngan 32")
    parser.add_argument("--batch-sizes", help="default: 64,256,1024 on cuda, 64 on cpu")
    parser.add_argument("--batch-size", type=int, help="one batch size (as --batch-sizes N)")
    parser.add_argument("--steps", type=int, help="timed batches; default 50 cuda, 40 cpu")
    parser.add_argument("--warmup", type=int, help="untimed batches first; default 10 / 5")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--resolution", type=int, help="table's DCGAN side; default 64 / 32")
    parser.add_argument("--channels", type=int, help="default 3 on cuda, 1 on cpu")
    parser.add_argument("--base-width", type=int, help="network widths; default: the papers'")
    parser.add_argument("--sweep-batch-size", type=int, help="default 1024 cuda, 32 cpu")
    parser.add_argument("--sweep-precision", help="default bf16-mixed on cuda, 32-true on cpu")
    parser.add_argument("--switches", default=",".join(SWITCHES), help="the sweep's switches")
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=H200_BF16_TFLOPS,
        help="the device's dense bf16 peak (default: H200, 989)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-table", action="store_true", help="only the sweep or families")
    parser.add_argument(
        "--families",
        help="ganlab rows of these families' CIFAR-10 recipes, e.g. stylegan2,biggan,progan",
    )
    parser.add_argument("--family-batch-size", type=int, default=64)
    parser.add_argument("--precision", default="32-true", help="the families' precision")
    args = parser.parse_args()
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible")
    args.switches = [s for s in args.switches.split(",") if s]
    unknown = [s for s in args.switches if s not in SWITCHES]
    if unknown:
        parser.error(f"--switches: {unknown[0]!r} is not one of {', '.join(SWITCHES)}")
    if args.families:
        from ganlab.cli import CONFIG_DIR

        recipes = sorted(
            p.stem[: -len("_cifar10")] for p in Path(CONFIG_DIR).glob("experiment/*_cifar10.yaml")
        )
        args.families = [f for f in args.families.split(",") if f]
        unknown = [f for f in args.families if f not in recipes]
        if unknown:
            parser.error(
                f"--families: {unknown[0]!r} has no CIFAR-10 recipe; accepted: {', '.join(recipes)}"
            )
    sizes = args.batch_sizes or (str(args.batch_size) if args.batch_size else None)
    args.batch_sizes = [int(s) for s in (sizes or ("64,256,1024" if cuda else "64")).split(",")]
    args.steps = args.steps or (50 if cuda else 40)
    args.warmup = args.warmup or (10 if cuda else 5)
    args.resolution = args.resolution or (64 if cuda else 32)
    args.channels = args.channels or (3 if cuda else 1)
    args.sweep_batch_size = args.sweep_batch_size or (1024 if cuda else 32)
    args.sweep_precision = args.sweep_precision or ("bf16-mixed" if cuda else "32-true")

    threads = f"CPU, {torch.get_num_threads()} threads"
    device_name = torch.cuda.get_device_name() if cuda else threads
    print(
        f"{device_name}, torch {torch.__version__}, Lightning {pl.__version__}; "
        f"{args.steps} timed steps after {args.warmup}, {args.repeats} repeats; {load()}"
    )
    if not args.no_table:
        table(args)
    if args.sweep:
        sweep(args)
    if args.families:
        families(args)
    print(f"\nend: {load()}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
