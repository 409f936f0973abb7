"""Small training helpers for tests that fit a module on in-memory batches."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader

from ganlab.data.base import TensorDictDataset, collate_batch


def fit(model: pl.LightningModule, batches: dict[str, torch.Tensor], steps: int) -> None:
    """`steps` batches of 8 (G and D steps each) on the CPU, without logs or checkpoints."""
    loader = DataLoader(
        TensorDictDataset(**batches), batch_size=8, shuffle=True, collate_fn=collate_batch
    )
    trainer = pl.Trainer(
        max_steps=2 * steps,  # global_step counts both optimizers' steps
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, loader)


def snapshot(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def changed(before: list[torch.Tensor], module: nn.Module) -> bool:
    return any(not torch.equal(b, p) for b, p in zip(before, module.parameters(), strict=True))
