import math

import pytest
import torch

from ganlab.data import grid_centers, ring_centers
from ganlab.metrics.modes import mode_coverage


@pytest.mark.parametrize("centers, std", [(ring_centers(), 0.01), (grid_centers(), 0.05)])
def test_exact_samples_from_the_mixture_cover_every_mode(centers, std):
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(len(centers), (2500,), generator=gen)
    points = centers[labels] + std * torch.randn(2500, 2, generator=gen)
    scores = mode_coverage(points, centers, std)
    assert scores["modes"] == len(centers)
    # Within 3 std in 2D: P(chi2_2 <= 9) = 1 - exp(-4.5) = 98.9%
    assert scores["hq_frac"] == pytest.approx(1 - math.exp(-4.5), abs=0.01)
    assert 0 <= scores["rev_kl"] < 0.02


def test_collapse_onto_one_mode():
    centers = ring_centers()
    points = centers[3] + 0.001 * torch.randn(2500, 2)
    scores = mode_coverage(points, centers, std=0.01)
    assert scores == {"modes": 1, "hq_frac": 1.0, "rev_kl": pytest.approx(math.log(8))}


def test_half_the_modes_and_off_mode_points():
    centers = grid_centers()
    on_modes = centers[:5].repeat(100, 1)  # 5 modes, 100 points each, exactly on the centers
    off_modes = torch.full((500, 2), 1.0)  # halfway between modes: never high quality
    scores = mode_coverage(torch.cat([on_modes, off_modes]), centers, std=0.05)
    assert scores["modes"] == 5
    assert scores["hq_frac"] == pytest.approx(0.5)
    assert scores["rev_kl"] == pytest.approx(math.log(25 / 5))


def test_no_high_quality_point_gives_infinite_reverse_kl():
    scores = mode_coverage(torch.full((10, 2), 1.0), grid_centers(), std=0.05)
    assert scores["modes"] == 0 and scores["hq_frac"] == 0 and scores["rev_kl"] == math.inf


def test_shape_mismatch_is_named():
    with pytest.raises(ValueError, match=r"points of shape \(4, 3\)"):
        mode_coverage(torch.zeros(4, 3), ring_centers(), 0.01)
