"""Resuming from last.ckpt continues exactly: N epochs straight == N/2, resume, N/2."""

import pytest
import torch

from ganlab.errors import CheckpointError, NonFiniteLossError
from ganlab.train import train
from tests.conftest import SMALL_DCGAN


def load(path):
    return torch.load(path, map_location="cpu", weights_only=False)


def assert_same_tensors(a, b, where=""):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_tensors(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.mark.parametrize(
    "model_overrides",
    [
        ["model=dcgan", *SMALL_DCGAN],  # BatchNorm statistics and the EMA generator
        ["model=gan_mlp", "data.resolution=8", "model.ema_decay=null"],  # dropout draws RNG
    ],
    ids=["dcgan", "gan_mlp"],
)
def test_resume_equals_straight_through(make_config, tmp_path, model_overrides):
    common = [*model_overrides, "trainer.limit_train_batches=3"]
    train(make_config(*common, "trainer.max_epochs=4", output_dir=tmp_path / "straight"))
    train(make_config(*common, "trainer.max_epochs=2", output_dir=tmp_path / "resumed"))
    half = tmp_path / "resumed" / "checkpoints" / "last.ckpt"
    assert load(half)["ganlab"]["progress"]["d_steps"] == 2 * 3
    train(
        make_config(
            *common, "trainer.max_epochs=4", f"ckpt_path={half}", output_dir=tmp_path / "resumed"
        )
    )

    straight = load(tmp_path / "straight" / "checkpoints" / "last.ckpt")
    resumed = load(tmp_path / "resumed" / "checkpoints" / "last.ckpt")
    assert straight["epoch"] == resumed["epoch"]
    assert straight["global_step"] == resumed["global_step"] == 4 * 3 * 2
    assert_same_tensors(straight["state_dict"], resumed["state_dict"], "state_dict")
    assert_same_tensors(straight["optimizer_states"], resumed["optimizer_states"], "optimizers")
    assert (
        straight["ganlab"]["progress"]
        == resumed["ganlab"]["progress"]
        == {"images_seen": 4 * 3 * 16, "d_steps": 12, "g_steps": 12}
    )


def test_resume_from_a_missing_checkpoint_is_refused(make_config, tmp_path):
    missing = tmp_path / "nowhere" / "last.ckpt"
    with pytest.raises(CheckpointError, match=f"ckpt_path='{missing}' does not exist"):
        train(make_config(f"ckpt_path={missing}"))


def test_non_finite_loss_stops_with_step_and_loss_and_keeps_last_good_checkpoint(
    make_config, tmp_path
):
    # Epoch 0 (3 batches) trains and is checkpointed; the 5th D loss, in epoch 1, is NaN.
    cfg = make_config(
        *SMALL_DCGAN,
        "trainer.max_epochs=3",
        "loss._target_=tests.support.ExplodingLoss",
        "+loss.explode_after=4",
    )
    with pytest.raises(NonFiniteLossError) as caught:
        train(cfg)
    message = str(caught.value)
    assert "train/d_loss became nan at epoch 1, batch 1" in message
    assert "after 4 D steps" in message and "checkpoints/last.ckpt" in message
    ckpt = load(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert ckpt["ganlab"]["progress"]["d_steps"] == 3  # saved at the end of epoch 0
    assert all(
        torch.isfinite(t).all() for t in ckpt["state_dict"].values() if t.is_floating_point()
    )
