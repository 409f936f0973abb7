"""Pictures of 2D runs: scatter plots of samples over the mixture's modes, drawn with PIL."""

import numpy as np
import pytest
import torch
from PIL import Image

from ganlab.checkpoint import load_model
from ganlab.data.toy2d import ring_centers
from ganlab.errors import ConfigError
from ganlab.plots import (
    BACKGROUND,
    CENTER_COLOR,
    SAMPLE_COLOR,
    plot_bounds,
    scatter_plot,
    to_pixels,
)
from ganlab.sample import write_samples
from ganlab.train import train
from tests.conftest import FAST, compose_config, run_command

CAPTION_ROWS = 16  # the caption's band at the top of the picture


def colour(picture: Image.Image, column: int, row: int) -> tuple[int, int, int]:
    return picture.getpixel((int(column), int(row)))


def drawn_sample_pixels(points, centers, size=512):
    """Pixels where a sample's dot must show: inside the picture, below the caption, and
    away from the crosses drawn over the dots."""
    pixels = to_pixels(points, plot_bounds(centers, points), size)
    center_pixels = to_pixels(centers, plot_bounds(centers, points), size)
    near_cross = (pixels[:, None, :] - center_pixels[None]).abs().amax(dim=2).min(dim=1).values
    keep = (pixels[:, 1] >= CAPTION_ROWS) & (pixels < size).all(dim=1) & (near_cross > 10)
    return pixels[keep].tolist()


def test_points_and_mode_centres_land_on_their_pixels():
    centers = torch.tensor([[-1.0, -1.0], [1.0, 1.0]])
    points = torch.tensor([[0.0, 0.0], [0.5, -0.5], [-0.5, 0.5], [50.0, 0.0]])
    picture = scatter_plot(points, centers, size=201)
    assert picture.size == (201, 201) and picture.mode == "RGB"
    # the frame is the modes' square [-1, 1]^2 widened by a quarter on each side: [-1.5, 1.5]^2,
    # 200 pixels across, y pointing up
    assert plot_bounds(centers, points) == (0.0, 0.0, 1.5)
    expected = {(0.0, 0.0): (100, 100), (0.5, -0.5): (133, 133), (-0.5, 0.5): (67, 67)}
    for (x, y), (column, row) in expected.items():
        assert to_pixels(torch.tensor([[x, y]]), (0.0, 0.0, 1.5), 201).tolist() == [[column, row]]
        assert colour(picture, column, row) == SAMPLE_COLOR
        assert colour(picture, column + 1, row - 1) == SAMPLE_COLOR  # a 3x3 dot
        assert colour(picture, column + 3, row) == BACKGROUND
    for column, row in ((33, 167), (167, 33)):  # the centres (-1, -1) and (1, 1): red crosses
        assert colour(picture, column, row) == CENTER_COLOR
        assert colour(picture, column + 2, row) == CENTER_COLOR
        assert colour(picture, column + 2, row + 2) == BACKGROUND
    assert colour(picture, 190, 100) == BACKGROUND  # (50, 0) lies outside: not drawn
    assert np.asarray(picture).reshape(-1, 3).tolist().count(list(SAMPLE_COLOR)) == 3 * 9


def test_without_modes_the_frame_holds_the_points():
    points = torch.tensor([[2.0, 3.0], [4.0, 5.0]])
    assert plot_bounds(None, points) == (3.0, 4.0, 1.5)
    picture = scatter_plot(points, size=101)
    for column, row in to_pixels(points, (3.0, 4.0, 1.5), 101).tolist():
        assert colour(picture, column, row) == SAMPLE_COLOR


def test_scatter_plot_refuses_points_that_are_not_2d():
    with pytest.raises(ValueError, match=r"draws 2D points, got shape \(4, 3\)"):
        scatter_plot(torch.zeros(4, 3))


@pytest.fixture(scope="module")
def ring_run(tmp_path_factory):
    """A few batches of the 2D MLP GAN on the ring."""
    run_dir = tmp_path_factory.mktemp("ring")
    train(compose_config([*FAST, "model=toy_mlp", "data=toy_ring"], run_dir))
    return run_dir


def test_a_2d_run_draws_its_samples_over_the_modes_each_epoch(ring_run):
    picture = Image.open(ring_run / "samples" / "epoch_0000.png").convert("RGB")
    assert picture.size == (512, 512)
    model, _ = load_model(ring_run / "checkpoints" / "last.ckpt")
    points = model.sample(1000, seed=0)  # the callback's points: num_points=1000, seed 0
    centers = ring_centers()
    for column, row in to_pixels(centers, plot_bounds(centers, points), 512).tolist():
        assert colour(picture, column, row) == CENTER_COLOR
    pixels = drawn_sample_pixels(points, centers)
    assert len(pixels) > 500  # most samples fall inside the frame
    assert all(colour(picture, column, row) == SAMPLE_COLOR for column, row in pixels)


def test_ganlab_sample_draws_a_2d_checkpoint_as_a_scatter_plot(ring_run, tmp_path):
    ckpt = ring_run / "checkpoints" / "last.ckpt"
    result = run_command(
        "ganlab-sample", f"ckpt_path={ckpt}", "num_samples=300", "out=ring.png", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "wrote 300 samples of shape (2,)" in result.stdout
    picture = Image.open(tmp_path / "ring.png").convert("RGB")
    assert picture.size == (512, 512)
    model, _ = load_model(ckpt)
    points, centers = model.sample(300, seed=0), ring_centers()
    for column, row in to_pixels(centers, plot_bounds(centers, points), 512).tolist():
        assert colour(picture, column, row) == CENTER_COLOR
    pixels = drawn_sample_pixels(points, centers)
    assert pixels and all(colour(picture, column, row) == SAMPLE_COLOR for column, row in pixels)


def test_a_png_of_samples_that_are_neither_images_nor_2d_points_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"samples of shape \(5,\) are not images"):
        write_samples(tmp_path / "x.png", torch.zeros(3, 5), labels=None)
    assert not (tmp_path / "x.png").exists()
