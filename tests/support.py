"""User-side classes that tests point `_target_` at, as a researcher's own package would."""

from __future__ import annotations

import torch
from torch import nn

from ganlab.losses import R1, BCELoss
from ganlab.models import GANModule


class UInt8Images(torch.utils.data.Dataset):
    """What torch-fidelity accepts as an input: a Dataset of uint8 CHW tensors."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index]


class TinyGenerator(nn.Module):
    """A user's own generator: one linear layer to an image."""

    def __init__(self, latent_dim: int, channels: int, resolution: int):
        super().__init__()
        self.shape = (channels, resolution, resolution)
        self.linear = nn.Linear(latent_dim, channels * resolution * resolution)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.linear(z)).view(len(z), *self.shape)


class RecordingDiscriminator(nn.Module):
    """Records, at each forward with autograd on, whether its weights require grad."""

    def __init__(self, channels: int, resolution: int):
        super().__init__()
        self.linear = nn.Linear(channels * resolution * resolution, 1)
        self.weights_trainable: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            self.weights_trainable.append(self.linear.weight.requires_grad)
        return self.linear(x.flatten(1)).squeeze(1)


class ExplodingLoss(BCELoss):
    """BCE until `explode_after` discriminator losses have been computed, then NaN."""

    def __init__(self, explode_after: int):
        self.explode_after = explode_after
        self.calls = 0

    def d_loss(self, real_logits, fake_logits):
        self.calls += 1
        loss = super().d_loss(real_logits, fake_logits)
        return loss * float("nan") if self.calls > self.explode_after else loss


class LabelSmoothingGAN(GANModule):
    """A user's own variant: overrides one hook (one-sided label smoothing) and nothing else."""

    def __init__(self, *args, smoothing: float = 0.1, **kwargs):
        super().__init__(*args, **kwargs)
        self.smoothing = smoothing

    def d_loss(self, real, fake, cond=None):
        real_logits = self.discriminate(real).float()
        fake_logits = self.discriminate(fake).float()
        bce = nn.functional.binary_cross_entropy_with_logits
        loss = bce(real_logits, torch.full_like(real_logits, 1 - self.smoothing)) + bce(
            fake_logits, torch.zeros_like(fake_logits)
        )
        return loss, {"train/d_real": real_logits.mean(), "train/d_fake": fake_logits.mean()}


class MixtureSampler(torch.nn.Module):
    """Stands in for a perfect generator of a 2D mixture: `sample` draws from the data itself,
    with the same (seed, index) contract as GANModule.sample."""

    def __init__(self, centers: torch.Tensor, std: float):
        super().__init__()
        self.centers, self.std = centers, std

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def sample(self, n, labels=None, seed=None, use_ema=True, batch_size=256, start=0):
        rows = []
        for index in range(start, start + n):
            gen = torch.Generator().manual_seed(seed * 1_000_003 + index)
            mode = torch.randint(len(self.centers), (1,), generator=gen)
            rows.append(self.centers[mode[0]] + self.std * torch.randn(2, generator=gen))
        return torch.stack(rows)


def read_wandb_run(path) -> dict:
    """The records of an offline W&B run file (`run-<id>.wandb`), read back as the W&B server
    would: LevelDB-log blocks of 32 KiB, each record a `wandb_internal_pb2.Record` protobuf.
    Returns {"config": {...}, "history": [{...}, ...], "summary": {...}} of decoded JSON."""
    import json
    import struct

    from wandb.proto import wandb_internal_pb2

    data = open(path, "rb").read()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    run = {"config": {}, "history": [], "summary": {}}
    pos, block, pending = 7, 32768, b""  # 7: the file header
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _checksum, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind in (2, 3):  # first or middle piece of a record split across blocks
            pending += chunk
            continue
        record = wandb_internal_pb2.Record.FromString(pending + chunk)
        pending = b""
        kind_name = record.WhichOneof("record_type")
        if kind_name == "config":
            run["config"].update({i.key: json.loads(i.value_json) for i in record.config.update})
        elif kind_name == "history":
            items = record.history.item
            run["history"].append(
                {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items}
            )
        elif kind_name == "summary":
            run["summary"].update(
                {
                    i.key or "/".join(i.nested_key): json.loads(i.value_json)
                    for i in record.summary.update
                }
            )
    return run


class CountingR1(R1):
    """R1 that records the discriminator steps at which it was applied."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.applied_at: list[int] = []

    def __call__(self, module, real, fake, cond):
        self.applied_at.append(module.d_steps)
        return super().__call__(module, real, fake, cond)


class LatentRecordingGAN(GANModule):
    """Writes, when training ends, what this process started from and drew: its initial
    generator weights and the latents of each training step, to `record_dir/rank<R>.pt`."""

    def __init__(self, *args, record_dir: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.record_dir = record_dir
        self.initial_generator = {k: v.clone() for k, v in self.generator.state_dict().items()}
        self.step_latents: list[torch.Tensor] = []
        self._in_training_step = False

    def training_step(self, batch, batch_idx):
        self._in_training_step = True
        try:
            return super().training_step(batch, batch_idx)
        finally:
            self._in_training_step = False

    def noise(self, batch_size: int) -> torch.Tensor:
        z = super().noise(batch_size)
        if self._in_training_step:
            self.step_latents.append(z.detach().cpu().clone())
        return z

    def on_train_end(self) -> None:
        super().on_train_end()
        record = {"initial_generator": self.initial_generator, "step_latents": self.step_latents}
        torch.save(record, f"{self.record_dir}/rank{self.global_rank}.pt")
