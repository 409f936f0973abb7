"""Where a watermark-removal checkpoint loses PSNR, on the photo set it was trained on.

Prints, for a checkpoint of `experiment=watermark_photos` (or any WatermarkRemovalGAN with a mask
head trained on a set in CLWD's layout):

1. the test split: the model's PSNR beside the identity's, and its mask head's IoU, recall and
   precision against the true masks (threshold 0.5);
2. ceilings on the test split: the true mask with the model's restored pixels inside; the
   model's mask with the clean pixels inside (a perfect restoration where the head points);
   the true mask with one colour and one opacity per image fitted to the clean image by least
   squares (how far an exact unblend of a binary mask goes);
   for `image_branch: global_unblend`, also its colour and opacity pooled over the true mask;
3. crossings: fresh watermarks (fixed seed) of the training style and of the test style, on
   clean training crops and on clean test crops, to tell an unseen photo from an unseen
   watermark.

    python benchmarks/watermark_diagnosis.py --ckpt runs/.../checkpoints/last.ckpt

PSNR is ganlab-eval's: per image on 8-bit levels, then the mean.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from hydra.utils import instantiate
from PIL import Image

from ganlab.checkpoint import load_model
from ganlab.data import degradations
from ganlab.data.translation import to_tensor
from ganlab.metrics.translation import per_image_psnr, to_uint8_scale
from ganlab.models.restoration import global_unblend

CROSSING_SEED = 123


def psnr(images: torch.Tensor, targets: torch.Tensor) -> float:
    return per_image_psnr(to_uint8_scale(images), to_uint8_scale(targets)).mean().item()


def mask_scores(probability: torch.Tensor, truth: torch.Tensor) -> str:
    found, marked = probability > 0.5, truth > 0.5
    both = (found & marked).sum().item()
    iou = both / max((found | marked).sum().item(), 1)
    recall, precision = both / max(marked.sum().item(), 1), both / max(found.sum().item(), 1)
    return f"IoU {iou:.3f}  recall {recall:.3f}  precision {precision:.3f}"


def best_single_blend(source: torch.Tensor, target: torch.Tensor, mask: torch.Tensor):
    """Per image, the opacity o and colour c that best explain source = (1 - o) target + o c
    on the mask's pixels (least squares), inverted there; the other pixels are left as they are."""
    restored = source.clone().double()
    for i in range(len(source)):
        inside = mask[i, 0] > 0
        marked, clean = source[i][:, inside].double(), target[i][:, inside].double()
        count = marked.shape[1]
        # source - target = -o target + (o c): unknowns o and o c per channel
        design = torch.zeros(3 * count, 4, dtype=torch.float64)
        design[:, 0] = -clean.reshape(-1)
        for channel in range(3):
            design[channel * count : (channel + 1) * count, 1 + channel] = 1
        fit = torch.linalg.lstsq(design, (marked - clean).reshape(-1, 1)).solution[:, 0]
        opacity = float(fit[0].clamp(1e-3, 0.95))
        colour = fit[1:] / opacity
        restored[i][:, inside] = (marked - opacity * colour[:, None]) / (1 - opacity)
    return restored.clamp(-1, 1).float()


def run(model, network, source: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    with torch.no_grad(), model.test_time(network):
        return model.generate(None, model.make_condition(source, mask), network)


def crossings(model, network, data, count: int) -> None:
    print(f"\ncrossings (fresh watermarks, seed {CROSSING_SEED}):")
    for photos in ("train", "test"):
        cleans = [
            np.asarray(Image.open(item["target"]).convert("RGB"))
            for item in data.items[photos][:count]
        ]
        for style in ("train", "test"):
            rng = np.random.default_rng(CROSSING_SEED)
            sources, masks = [], []
            for clean in cleans:
                if style == "train":
                    marked, mask = degradations.add_watermark(clean, rng, varied=True)
                else:
                    words, logos = degradations.TEST_WORDS, degradations.TEST_LOGOS
                    marked, mask = degradations.add_watermark(clean, rng, words, logos)
                sources.append(to_tensor(Image.fromarray(marked)))
                masks.append(torch.from_numpy(mask)[None].float())
            source, mask = torch.stack(sources), torch.stack(masks)
            target = torch.stack([to_tensor(Image.fromarray(clean)) for clean in cleans])
            output = run(model, network, source, mask)
            scores = mask_scores(output.mask_probability, mask)
            print(
                f"  {photos + ' photos,':13s} {style + '-style':11s} watermarks: model "
                f"{psnr(output, target):.2f}  identity {psnr(source, target):.2f}  {scores}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True, help="a watermark model's .ckpt")
    parser.add_argument("--count", type=int, default=48, help="crops per crossing")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, cfg = load_model(args.ckpt, torch.device("cpu"))
    if not getattr(model, "mask_channels", 0):
        raise SystemExit(f"{args.ckpt} has no mask head (model.mask_weight 0): nothing to diagnose")
    data = instantiate(cfg.data)
    network = model.translation_network(True)
    items = data.real_dataset(data.eval_split)
    batch = {key: torch.stack([item[key] for item in items]) for key in items[0]}
    source, target, mask = batch["source"], batch["target"], batch["mask"]
    output = run(model, network, source, mask)
    head = output.mask_probability
    found = (head > 0.5).float()
    print(f"test split ({len(source)} crops):")
    print(f"  model {psnr(output, target):.2f}  identity {psnr(source, target):.2f}")
    print(f"  mask head: {mask_scores(head, mask)}")
    print("ceilings:")
    inside_true = source * (1 - mask) + output.prediction * mask
    print(f"  true mask, model's pixels inside        {psnr(inside_true, target):.2f}")
    inside_found = source * (1 - found) + target * found
    print(f"  model's mask, clean pixels inside       {psnr(inside_found, target):.2f}")
    unblended = best_single_blend(source, target, mask)
    print(f"  true mask, best one colour and opacity  {psnr(unblended, target):.2f}")
    if getattr(output, "unblend_maps", None) is not None:  # image_branch: global_unblend
        pooled = global_unblend(source, *output.unblend_maps, mask)
        print(f"  true mask, the model's colour, opacity  {psnr(pooled, target):.2f}")
        weight = mask / mask.sum((2, 3), keepdim=True)
        opacity = (output.unblend_maps[1] * weight).sum((1, 2, 3))
        low, middle, high = opacity.quantile(torch.tensor([0.1, 0.5, 0.9])).tolist()
        print(f"  the model's opacities on the true mask: {low:.2f} / {middle:.2f} / {high:.2f}")
        print("    (10th / 50th / 90th percentile; the data's are uniform on 0.3 to 0.6)")
    crossings(model, network, data, args.count)


if __name__ == "__main__":
    main()
