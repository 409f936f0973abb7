"""Each image-to-image model against the classical method a user would otherwise reach for.

Trains every `experiment=<task>_photos` with `ganlab-train`, as a user would, on the synthetic
64x64 photo sets (scikit-image's photos; the test crops come from a held-out photo), then scores
the final checkpoint and the classical baselines on the same held-out items with the same scorer
(`TranslationQuality`, the code behind `ganlab-eval`):

    watermark  pix2pix + mask head   vs identity (the watermarked image); PSNR, SSIM
    sr4        SRGAN GAN stage, its L1 stage and their 0.5 interpolation
                                     vs bicubic, Lanczos; PSNR and SSIM on Y, border crop 4
    inpaint    gated-conv GAN refining a biharmonic fill
                                     vs biharmonic inpainting; hole L1 (x100), PSNR
    denoise    residual denoiser GAN vs non-local means, total variation (sigma known); PSNR
    cyclegan   CycleGAN a -> b       vs identity, against the hidden stylisation; PSNR, SSIM

plus the L1-only ablation of pix2pix (watermark), of SR (its stage 1) and of the inpainting GAN
(its hole L1 alone), the no-GAN ablation of the denoiser (its pixel loss alone), with a sharpness
proxy:
the gradient energy of the outputs over that of the targets (1 = as much fine detail as the
targets; blur lowers it).

    python benchmarks/img2img.py [--tasks watermark,sr4,...] [--jobs 2] [--max-minutes 20]
                                 [--run-dir DIR] [--data-dir DIR] [--out results.json]
                                 [--threads N] [overrides]

Extra arguments are Hydra overrides for every run (e.g. trainer.max_epochs=1 to try it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from hydra.utils import instantiate

from ganlab import baselines
from ganlab.checkpoint import load_model
from ganlab.metrics.translation_eval import TranslationQuality

TASKS = ("watermark", "sr4", "inpaint", "denoise", "cyclegan")
NOISE_SIGMA = 25  # denoise_photos' noise level (0..255): the baselines are told it
SR_STAGE_1 = ["model.gan_weight=0", "model.l1_weight=1", "model.g_optimizer.lr=2e-4"]
SR_STAGE_1_EPOCHS = "trainer.max_epochs=30"  # L1 alone is cheap: no discriminator
# the same recipe without its GAN term (model.gan_weight=0), by task
ABLATIONS = {
    "watermark": "L1 only (ablation)",
    "denoise": "no GAN (ablation)",
    "inpaint": "L1 only (ablation)",
}


Method = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]


class ClassicalMethod:
    """A classical method behind a translation model's interface, so that the scorer is the one
    `ganlab-eval` uses and the protocol is the same."""

    input_kind = "image"
    test_mode = "not applicable (no network)"
    generator_ema = None
    device = torch.device("cpu")

    def __init__(self, name: str, method: Method):
        self.name = name
        self.method = method

    def translate(self, inputs, masks=None, use_ema=True, batch_size=16) -> torch.Tensor:
        return self.method(inputs.float().cpu(), masks)


CLASSICAL = {
    "watermark": [ClassicalMethod("identity", lambda x, m: baselines.identity(x))],
    "sr4": [
        ClassicalMethod("bicubic", lambda x, m: baselines.upscale(x, 4, "bicubic")),
        ClassicalMethod("lanczos", lambda x, m: baselines.upscale(x, 4, "lanczos")),
    ],
    "inpaint": [ClassicalMethod("biharmonic", baselines.inpaint_biharmonic)],
    "denoise": [
        ClassicalMethod("nl_means", lambda x, m: baselines.denoise_nl_means(x, NOISE_SIGMA)),
        ClassicalMethod("tv", lambda x, m: baselines.denoise_tv(x, sigma=NOISE_SIGMA)),
    ],
    "cyclegan": [ClassicalMethod("identity", lambda x, m: baselines.identity(x))],
}
METRICS = {
    "watermark": ["psnr", "ssim"],
    "sr4": ["psnr", "ssim"],  # SR data add psnr_y/ssim_y with a border crop of 4
    "inpaint": ["psnr", "ssim", "l1_hole", "psnr_hole"],
    "denoise": ["psnr", "ssim"],
    "cyclegan": ["psnr", "ssim"],
}


def train(run_dir: Path, task: str, data_dir: Path, threads: int, overrides: list[str]) -> float:
    command = [
        str(Path(sys.executable).with_name("ganlab-train")),
        f"experiment={task}_photos",
        f"hydra.run.dir={run_dir}",
        f"paths.data_dir={data_dir}",
        "logger=csv",
        "trainer.enable_progress_bar=false",
        *overrides,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command[1:])} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - start


def interpolate(a: Path, b: Path, alpha: float, out: Path) -> None:
    command = [
        str(Path(sys.executable).with_name("ganlab-interpolate")),
        f"a={a}",
        f"b={b}",
        f"alpha={alpha}",
        f"out={out}",
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command[1:])} failed:\n{result.stderr[-3000:]}")


def gradient_energy(images: torch.Tensor) -> torch.Tensor:
    """Mean squared horizontal and vertical differences per image: fine detail (a sharpness
    proxy; blur lowers it, noise and hallucinated texture raise it)."""
    dx = images[..., :, 1:] - images[..., :, :-1]
    dy = images[..., 1:, :] - images[..., :-1, :]
    return dx.pow(2).mean(dim=(1, 2, 3)) + dy.pow(2).mean(dim=(1, 2, 3))


def sharpness(method, datamodule) -> float:
    """Gradient energy of the outputs over that of the targets, on the eval split."""
    items = datamodule.real_dataset(datamodule.eval_split)
    batch = {key: torch.stack([items[i][key] for i in range(len(items))]) for key in items[0]}
    source = batch.get("source", batch.get("a"))
    with torch.no_grad():
        output = method.translate(source, batch.get("mask")).cpu().clamp(-1, 1)
    target = batch.get("target", batch.get("b"))
    return float(gradient_energy(output).mean() / gradient_energy(target).mean())


def score(method, datamodule, task: str) -> dict:
    quality = TranslationQuality(metrics=METRICS[task], lpips_by_default=False)
    evaluation = quality.evaluate(method, datamodule)
    return {
        "scores": evaluation.scores,
        "sharpness": sharpness(method, datamodule),
        "protocol": evaluation.protocol,
    }


def model_row(name: str, checkpoint: Path, task: str, seconds: float | None) -> dict:
    model, run_config = load_model(checkpoint, torch.device("cpu"))
    datamodule = instantiate(run_config.data)
    return {"task": task, "method": name, "seconds": seconds, **score(model, datamodule, task)}


def run_task(task: str, root: Path, data_dir: Path, threads: int, overrides: list[str]) -> list:
    """Every run of `task`, then the scores of its models and of its classical baselines."""
    rows = []
    gan_dir, l1_dir = root / task / "gan", root / task / "l1"
    if task == "sr4":  # stage 1 (L1), then the GAN stage from it, then their blend
        l1_seconds = train(
            l1_dir, task, data_dir, threads, [*SR_STAGE_1, SR_STAGE_1_EPOCHS, *overrides]
        )
        stage_1 = l1_dir / "checkpoints" / "last.ckpt"
        gan_seconds = train(
            gan_dir, task, data_dir, threads, [f"model.init_from={stage_1}", *overrides]
        )
        blend = root / task / "interpolated_0.5.ckpt"
        interpolate(stage_1, gan_dir / "checkpoints" / "last.ckpt", 0.5, blend)
        rows.append(model_row("L1 stage (PSNR-oriented)", stage_1, task, l1_seconds))
        rows.append(model_row("interpolation 0.5", blend, task, None))
    else:
        gan_seconds = train(gan_dir, task, data_dir, threads, overrides)
        if task in ABLATIONS:
            l1_seconds = train(l1_dir, task, data_dir, threads, ["model.gan_weight=0", *overrides])
            rows.append(
                model_row(ABLATIONS[task], l1_dir / "checkpoints" / "last.ckpt", task, l1_seconds)
            )
    rows.insert(
        0, model_row("ganlab GAN", gan_dir / "checkpoints" / "last.ckpt", task, gan_seconds)
    )
    _, run_config = load_model(gan_dir / "checkpoints" / "last.ckpt", torch.device("cpu"))
    datamodule = instantiate(run_config.data)
    for method in CLASSICAL[task]:
        start = time.perf_counter()
        row = score(method, datamodule, task)
        rows.append(
            {"task": task, "method": method.name, "seconds": time.perf_counter() - start, **row}
        )
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| task | method | PSNR | SSIM | PSNR-Y | SSIM-Y | hole L1 x100 | sharpness | minutes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:

        def cell(key: str, digits: int = 2, scale: float = 1.0, scores=row["scores"]) -> str:
            return f"{scores[key] * scale:.{digits}f}" if key in scores else ""

        minutes = f"{row['seconds'] / 60:.1f}" if row.get("seconds") else ""
        lines.append(
            f"| {row['task']} | {row['method']} | {cell('psnr')} | {cell('ssim', 3)} "
            f"| {cell('psnr_y')} | {cell('ssim_y', 3)} | {cell('l1_hole', 2, 100)} "
            f"| {row['sharpness']:.2f} | {minutes} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--jobs", type=int, default=1, help="tasks at a time")
    parser.add_argument("--max-minutes", type=float, default=20, help="per training run")
    parser.add_argument("--run-dir", type=Path, help="where runs are written (default: temp)")
    parser.add_argument("--data-dir", type=Path, help="where the photo sets are written")
    parser.add_argument("--out", type=Path, help="write every row, with protocols, as JSON")
    parser.add_argument(
        "--threads",
        type=int,
        help="torch threads per run (default: 2, or 1 with --jobs > 1); on a machine busy with "
        "other work 1 is faster: idle threads spin waiting for the busy one",
    )
    args, overrides = parser.parse_known_args()

    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads: {args.threads} is not a thread count; accepted: 1 or more")
    tasks = args.tasks.split(",")
    for task in tasks:
        if task not in TASKS:
            parser.error(f"--tasks: {task!r} is not one of {', '.join(TASKS)}")
    root = (args.run_dir or Path(tempfile.mkdtemp(prefix="ganlab-img2img-"))).resolve()
    data_dir = (args.data_dir or root / "data").resolve()
    root.mkdir(parents=True, exist_ok=True)
    print(f"runs in {root}, photo sets in {data_dir}", flush=True)
    threads = args.threads or (1 if args.jobs > 1 else max(1, min(2, os.cpu_count() or 1)))
    torch.set_num_threads(threads)
    seconds = int(args.max_minutes * 60)
    limit = (
        f"+trainer.max_time=00:{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    )

    def work(task: str) -> list:
        rows = run_task(task, root, data_dir, threads, [limit, *overrides])
        print(table(rows), flush=True)
        return rows

    with ThreadPoolExecutor(args.jobs) as pool:
        rows = [row for task_rows in pool.map(work, tasks) for row in task_rows]
    print()
    print(table(rows))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2, default=str))


if __name__ == "__main__":
    main()
