"""BigGAN's building blocks, each checked by its exact identity (float64, small shapes)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from ganlab.errors import ConfigError
from ganlab.losses.orthogonal import (
    add_orthogonal_gradient_,
    orthogonal_gradient,
    orthogonal_penalty,
)
from ganlab.networks import BigGANDiscriminator, BigGANGenerator
from ganlab.networks.biggan import (
    BigGANConditionalBatchNorm2d,
    SelfAttention,
    truncated_latents,
    truncated_noise,
)
from ganlab.utils.standing_stats import standing_statistics_

# The two CIFAR-10 recipes (see ganlab/networks/biggan.py), at small widths for speed.
AUTHOR = {
    "generator": dict(
        latent_dim=128, shared_dim=0, hierarchical=False, attention_resolution=None,
        bn_eps=1e-5, sn_eps=1e-8, init="N02",
    ),
    "discriminator": dict(attention_resolution=None, sn_eps=1e-8, init="N02"),
}  # fmt: skip
STUDIOGAN = {"generator": {}, "discriminator": {}}  # the constructors' defaults
RECIPES = {"author": AUTHOR, "studiogan": STUDIOGAN}


@pytest.fixture(autouse=True)
def float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def small_pair(recipe: str, num_classes: int = 10):
    torch.manual_seed(0)
    kwargs = RECIPES[recipe]
    g = BigGANGenerator(num_classes=num_classes, width=16, **kwargs["generator"])
    d = BigGANDiscriminator(num_classes=num_classes, width=16, **kwargs["discriminator"])
    return g, d


def spectral_normed(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if parametrize.is_parametrized(m, "weight")]


# ---------------------------------------------------------------- conditional BatchNorm
def test_cbn_with_zero_projections_is_plain_batch_norm():
    cbn = BigGANConditionalBatchNorm2d(4, lambda n: nn.Linear(6, n, bias=False), eps=1e-4)
    nn.init.zeros_(cbn.gain.weight)
    nn.init.zeros_(cbn.bias.weight)
    x, condition = torch.randn(5, 4, 3, 3), torch.randn(5, 6)
    expected = F.batch_norm(x, None, None, training=True, eps=1e-4)
    torch.testing.assert_close(cbn(x, condition), expected, rtol=0, atol=1e-12)
    out = cbn(x, condition)  # train mode: per-channel mean 0 and variance 1 over (N, H, W)
    torch.testing.assert_close(out.mean(dim=(0, 2, 3)), torch.zeros(4), rtol=0, atol=1e-12)


def test_cbn_with_one_class_is_batch_norm_with_that_class_affine():
    cbn = BigGANConditionalBatchNorm2d(4, lambda n: nn.Embedding(10, n))
    x, labels = torch.randn(6, 4, 3, 3), torch.full((6,), 7)
    bn = nn.BatchNorm2d(4)
    with torch.no_grad():
        bn.weight.copy_(1 + cbn.gain.weight[7])  # BigGAN's gain is 1 + the table row
        bn.bias.copy_(cbn.bias.weight[7])
    torch.testing.assert_close(cbn(x, labels), bn(x), rtol=0, atol=1e-12)
    assert not torch.allclose(cbn(x, torch.full((6,), 3)), bn(x))  # another class, another affine


def test_generator_ignores_labels_when_every_class_shares_one_embedding_row():
    g, _ = small_pair("studiogan")
    with torch.no_grad():
        g.shared.weight.copy_(g.shared.weight[0].expand_as(g.shared.weight))
    z = torch.randn(4, g.latent_dim)
    g.eval()
    torch.testing.assert_close(g(z, torch.tensor([0, 1, 2, 3])), g(z, torch.tensor([9, 9, 5, 5])))


def test_shared_embedding_rows_of_absent_classes_get_no_gradient():
    g, _ = small_pair("studiogan")
    g(torch.randn(4, g.latent_dim), torch.tensor([1, 1, 4, 4])).sum().backward()
    grad_norms = g.shared.weight.grad.norm(dim=1)
    assert (grad_norms[[1, 4]] > 0).all()
    assert (grad_norms[[0, 2, 3, 5, 6, 7, 8, 9]] == 0).all()


def test_hierarchical_z_feeds_each_chunk_to_one_place():
    g, _ = small_pair("studiogan")
    z, labels = torch.randn(3, g.latent_dim), torch.tensor([0, 1, 2])
    linear_input, conditions = g.conditions(z, labels)
    chunk = g.chunk_size
    assert chunk == 20 and torch.equal(linear_input, z[:, :chunk])
    for block, condition in enumerate(conditions, start=1):
        assert torch.equal(condition[:, -chunk:], z[:, block * chunk : (block + 1) * chunk])
        assert torch.equal(condition[:, :-chunk], g.shared(labels))


# ---------------------------------------------------------------- self-attention
def test_attention_with_gamma_zero_is_exactly_the_identity():
    attention = SelfAttention(16)
    x = torch.randn(2, 16, 8, 8)
    assert attention.gamma.item() == 0.0  # SAGAN starts every attention block as the identity
    assert torch.equal(attention(x), x)
    rows = attention.attention_map(x)
    assert rows.shape == (2, 64, 16)
    torch.testing.assert_close(rows.sum(dim=-1), torch.ones(2, 64), rtol=0, atol=1e-12)
    with torch.no_grad():
        attention.gamma.fill_(0.5)
    out = attention(x)
    assert out.shape == x.shape and not torch.allclose(out, x)


def test_attention_sits_where_each_recipe_puts_it():
    g, d = small_pair("studiogan")
    assert [isinstance(a, SelfAttention) for a in g.attentions] == [False, True, False]  # 16x16
    assert isinstance(d.blocks[1], SelfAttention)  # after D's first block, at 16x16
    g, d = small_pair("author")
    assert not any(isinstance(m, SelfAttention) for m in [*g.modules(), *d.modules()])


# ---------------------------------------------------------------- orthogonal regularization
def test_ortho_gradient_is_zero_for_orthogonal_rows_whatever_their_norms():
    rows = torch.linalg.qr(torch.randn(12, 5))[0].T  # 5 orthonormal rows of length 12
    weight = (torch.tensor([0.1, 1.0, 3.0, 7.0, 0.5])[:, None] * rows).reshape(5, 3, 2, 2)
    assert orthogonal_gradient(weight, 1e-4).abs().max() < 1e-15
    assert orthogonal_penalty(weight, 1e-4).abs() < 1e-15


def test_ortho_gradient_is_the_gradient_of_the_penalty():
    weight = torch.randn(6, 4, 3, 3, requires_grad=True)
    (autograd,) = torch.autograd.grad(orthogonal_penalty(weight, 0.3), weight)
    closed_form = orthogonal_gradient(weight, 0.3)
    assert closed_form.abs().max() > 1e-3  # non-orthogonal rows are pushed
    torch.testing.assert_close(closed_form, autograd, rtol=1e-12, atol=1e-12)


def test_ortho_gradient_skips_vectors_and_the_skipped_parameters():
    g, _ = small_pair("author")  # N(0, 0.02) init: no weight starts with orthogonal rows
    g(torch.randn(4, g.latent_dim), torch.tensor([0, 1, 2, 3])).sum().backward()
    before = {name: p.grad.clone() for name, p in g.named_parameters()}
    skipped = g.linear.parametrizations.weight.original
    add_orthogonal_gradient_(g, 1e-2, skip=[skipped])
    for name, param in g.named_parameters():
        if param.ndim < 2 or param is skipped:
            assert torch.equal(param.grad, before[name]), name
        else:  # the raw weight under spectral norm, as the official code
            assert torch.equal(param.grad, before[name] + orthogonal_gradient(param, 1e-2)), name
            assert not torch.equal(param.grad, before[name]), name


@pytest.mark.parametrize("strength", [-1e-4, "1e-4", None, True])
def test_ortho_strength_must_be_a_non_negative_number(strength):
    with pytest.raises(ConfigError, match=r"strength=.* must be a number >= 0"):
        orthogonal_penalty(torch.randn(3, 3), strength)


# ---------------------------------------------------------------- standing statistics
def generator_batches(g: BigGANGenerator, batch_size: int, seed: int = 0):
    stream = torch.Generator().manual_seed(seed)

    def draw():
        return (
            torch.randn(batch_size, g.latent_dim, generator=stream),
            torch.randint(0, 10, (batch_size,), generator=stream),
        )

    return draw


@pytest.mark.parametrize("recipe", ["author", "studiogan"])
def test_standing_stats_make_eval_outputs_independent_of_the_batch_size(recipe):
    g, _ = small_pair(recipe)
    z, labels = torch.randn(8, g.latent_dim), torch.randint(0, 10, (8,))
    train_mode_rows = g(z, labels)[:1]
    assert not torch.allclose(g(z[:1].repeat(2, 1), labels[:1].repeat(2)), train_mode_rows)
    standing_statistics_(g, generator_batches(g, 6), num_batches=2)
    assert not g.training
    one, eight = g(z[:1], labels[:1]), g(z, labels)
    torch.testing.assert_close(one, eight[:1], rtol=0, atol=1e-12)


def test_standing_stats_are_the_plain_average_of_the_batches():
    g, _ = small_pair("studiogan")
    norms = [m for m in g.modules() if isinstance(m, nn.BatchNorm2d)]
    seen: dict[nn.Module, list[torch.Tensor]] = {norm: [] for norm in norms}
    for norm in norms:
        norm.register_forward_pre_hook(lambda m, inputs: seen[m].append(inputs[0].detach()))
    standing_statistics_(g, generator_batches(g, 5), num_batches=3)
    for norm in norms:
        batches = seen[norm]
        assert len(batches) == 3 and norm.num_batches_tracked.item() == 3
        mean = torch.stack([b.mean(dim=(0, 2, 3)) for b in batches]).mean(0)
        var = torch.stack([b.var(dim=(0, 2, 3), unbiased=True) for b in batches]).mean(0)
        torch.testing.assert_close(norm.running_mean, mean, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(norm.running_var, var, rtol=1e-12, atol=1e-12)
        assert norm.momentum == 0.1  # restored after the cumulative average


def test_standing_stats_of_one_repeated_batch_are_that_batch():
    norm_net = nn.Sequential(nn.BatchNorm2d(3))
    x = torch.randn(4, 3, 2, 2)
    standing_statistics_(norm_net, lambda: (x,), num_batches=5)
    norm = norm_net[0]
    torch.testing.assert_close(norm.running_mean, x.mean(dim=(0, 2, 3)), rtol=0, atol=1e-12)
    torch.testing.assert_close(norm.running_var, x.var(dim=(0, 2, 3)), rtol=0, atol=1e-12)


def test_standing_stats_leave_spectral_norm_vectors_alone():
    g, _ = small_pair("studiogan")
    u_before = g.linear.parametrizations.weight[0]._u.clone()
    standing_statistics_(g, generator_batches(g, 4), num_batches=2)
    assert torch.equal(g.linear.parametrizations.weight[0]._u, u_before)


def test_standing_stats_reject_bad_inputs():
    with pytest.raises(ConfigError, match=r"num_batches=0 must be an int >= 1"):
        standing_statistics_(nn.BatchNorm2d(3), lambda: (torch.randn(2, 3, 2, 2),), 0)
    with pytest.raises(ConfigError, match="Linear has no BatchNorm with running statistics"):
        standing_statistics_(nn.Linear(3, 3), lambda: (torch.randn(2, 3),))


# ---------------------------------------------------------------- truncation
def test_truncation_resamples_into_the_threshold_and_is_seeded():
    z = truncated_noise(500, 16, 0.5, torch.Generator().manual_seed(1))
    assert z.abs().max() <= 0.5
    assert (z.abs() > 0.45).float().mean() < 0.15  # redrawn, not clipped: no pile-up at the edge
    again = truncated_noise(500, 16, 0.5, torch.Generator().manual_seed(1))
    other = truncated_noise(500, 16, 0.5, torch.Generator().manual_seed(2))
    assert torch.equal(z, again) and not torch.equal(z, other)


def test_truncated_latents_are_seeded_per_row():
    rows = truncated_latents(6, 32, 0.7, seed=3)
    assert rows.abs().max() <= 0.7 and rows.dtype == torch.float32
    torch.testing.assert_close(truncated_latents(2, 32, 0.7, seed=3, start=4), rows[4:])
    assert not torch.equal(truncated_latents(6, 32, 0.7, seed=4), rows)
    # A threshold no draw exceeds leaves the untruncated latents, row for row.
    untruncated = np.stack([np.random.default_rng([3, i]).standard_normal(32) for i in range(6)])
    torch.testing.assert_close(
        truncated_latents(6, 32, 1e9, seed=3).numpy(), untruncated.astype("f4")
    )


@pytest.mark.parametrize("threshold", [0, -0.5, "0.7", True])
def test_truncation_threshold_must_be_positive(threshold):
    with pytest.raises(ConfigError, match=r"truncation=.* must be a positive number"):
        truncated_noise(2, 4, threshold)


# ---------------------------------------------------------------- the networks
@pytest.mark.parametrize("recipe", ["author", "studiogan"])
def test_forward_shapes_and_the_projection_term(recipe):
    g, d = small_pair(recipe)
    labels = torch.tensor([0, 1, 2, 3])
    x = g(torch.randn(4, g.latent_dim), labels)
    assert x.shape == (4, 3, 32, 32) and x.abs().max() <= 1.0
    d.eval()  # deterministic: no power-iteration step between the two calls
    logits = d(x, labels)
    assert logits.shape == (4,)
    assert not torch.allclose(d(x, torch.tensor([5, 6, 7, 8])), logits)  # the label counts
    with torch.no_grad():  # equal class embeddings: the label no longer enters
        original = d.embed.parametrizations.weight.original
        original.copy_(original[0].expand_as(original))
    torch.testing.assert_close(d(x, labels), d(x, torch.tensor([5, 6, 7, 8])))


@pytest.mark.parametrize(
    ("recipe", "g_count", "d_count"),
    # G: linear + 3 blocks x 3 convs + output conv (+ 3 blocks x 2 CBN x 2 linears + attention's
    # 4 convs); D: 4 blocks' 8 convs + 2 shortcuts + linear + embedding (+ attention's 4).
    [("author", 11, 12), ("studiogan", 27, 16)],
)
def test_spectral_norm_where_the_recipe_puts_it(recipe, g_count, d_count):
    g, d = small_pair(recipe)
    assert len(spectral_normed(g)) == g_count
    assert len(spectral_normed(d)) == d_count
    # G's class embeddings stay plain (shared, or the per-class CBN tables); D's is normalized.
    embeddings = [m for m in g.modules() if isinstance(m, nn.Embedding)]
    assert embeddings and not any(parametrize.is_parametrized(m) for m in embeddings)
    assert parametrize.is_parametrized(d.embed, "weight")


def test_the_author_recipe_has_the_published_sizes():
    kwargs = AUTHOR
    g = BigGANGenerator(num_classes=10, width=256, **kwargs["generator"])
    d = BigGANDiscriminator(num_classes=10, width=256, **kwargs["discriminator"])
    count = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
    assert (round(count(g) / 1e5), round(count(d) / 1e5)) == (43, 42)  # 4.3M and 4.2M


@pytest.mark.parametrize(
    ("network", "kwargs", "message"),
    [
        (BigGANGenerator, dict(resolution=64), r"resolution=64 is not supported.*\(32,\)"),
        (BigGANGenerator, dict(init="he"), r"init='he' is not known; accepted: \('N02'"),
        (BigGANGenerator, dict(shared_dim=0), r"hierarchical=true .* shared_dim=0"),
        (BigGANGenerator, dict(latent_dim=81), r"latent_dim=81 must split evenly into 4 chunks"),
        (BigGANGenerator, dict(attention_resolution=4), r"attention_resolution=4 .*\[8, 16, 32\]"),
        (BigGANDiscriminator, dict(attention_resolution=32), r"=32 .*accepted: \[8, 16\]"),
        (BigGANDiscriminator, dict(width=12), r"channels divisible by 8; got 12"),
        (BigGANDiscriminator, dict(num_classes=None), r"needs labelled data"),
    ],
)
def test_bad_constructor_arguments_fail_clearly(network, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        network(**{"num_classes": 10, **kwargs})
