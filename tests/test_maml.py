"""MAML's and ANIL's functional core, their pre-training, and the maml, anil, cmaml learners."""

import pytest
import torch
from torch import nn
from torch.nn.functional import cross_entropy

from lifelong.maml import (
    MAMLSettings,
    Weights,
    adapt,
    initial_weights,
    logits_of,
    meta_gradient,
    pretrain_maml,
)
from lifelong.methods.cmaml import CMAMLLearner, CMAMLOptions
from lifelong.methods.maml import MAMLLearner, MAMLOptions, load_weights, save_weights
from lifelong.pretraining import conv4, encoder_cache_path
from streams.switching import Distribution, DistributionKind


def _tiny(seed=0):
    """A small encoder in double precision, so that finite differences are exact enough."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(6, 4), nn.Tanh()).double()


def _batch(n, ways, seed):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=generator, dtype=torch.float64)
    return x, torch.arange(n) % ways


def _query_loss(encoder, inner, steps=2, lr=0.5):
    """The meta-loss as a plain function of the encoder's parameters (no meta_gradient)."""
    support, query = _batch(6, 3, 1), _batch(9, 3, 2)
    adapted = adapt(
        encoder, initial_weights(encoder, 3, 4), *support, steps=steps, lr=lr, inner=inner,
        create_graph=True,
    )
    return cross_entropy(logits_of(encoder, adapted, query[0]), query[1])


@pytest.mark.parametrize("inner", ["all", "head"])
def test_adaptation_lowers_the_loss_on_its_batch(inner):
    encoder = _tiny()
    x, y = _batch(9, 3, 0)
    start = initial_weights(encoder, 3, 4).detached()
    adapted = adapt(encoder, start, x, y, steps=5, lr=0.5, inner=inner)
    before = cross_entropy(logits_of(encoder, start, x), y)
    after = cross_entropy(logits_of(encoder, adapted, x), y)
    assert float(after) < float(before)
    # The zero head starts every task, of any number of ways, at uniform predictions.
    assert torch.equal(logits_of(encoder, start, x), torch.zeros(9, 3, dtype=torch.float64))


def test_anil_meta_gradient_reaches_the_encoder_and_equals_autograd_and_finite_differences():
    encoder = _tiny()
    support, query = _batch(6, 3, 1), _batch(9, 3, 2)
    loss = meta_gradient(encoder, (*support, *query), 3, 4, steps=2, lr=0.5, inner="head")
    found = [p.grad.clone() for p in encoder.parameters()]
    assert all(float(g.abs().sum()) > 0 for g in found)
    expected = torch.autograd.grad(_query_loss(encoder, "head"), list(encoder.parameters()))
    for got, want in zip(found, expected, strict=True):
        torch.testing.assert_close(got, want)
    assert loss == pytest.approx(float(_query_loss(encoder, "head")))
    # One coordinate by central differences: the gradient is exact, through the head's steps.
    weight = encoder[1].weight
    with torch.no_grad():
        weight[0, 0] += 1e-6
        up = float(_query_loss(encoder, "head"))
        weight[0, 0] -= 2e-6
        down = float(_query_loss(encoder, "head"))
        weight[0, 0] += 1e-6
    assert found[0][0, 0].item() == pytest.approx((up - down) / 2e-6, rel=1e-5)


def test_first_order_maml_meta_gradient_is_the_query_gradient_at_the_adapted_weights():
    encoder = _tiny()
    support, query = _batch(6, 3, 1), _batch(9, 3, 2)
    meta_gradient(encoder, (*support, *query), 3, 4, steps=2, lr=0.5, inner="all", scale=0.5)
    adapted = adapt(
        encoder, initial_weights(encoder, 3, 4).detached(), *support, steps=2, lr=0.5,
        inner="all",
    )
    query_loss = cross_entropy(logits_of(encoder, adapted, query[0]), query[1])
    expected = torch.autograd.grad(query_loss, list(adapted.body.values()))
    for parameter, want in zip(encoder.parameters(), expected, strict=True):
        torch.testing.assert_close(parameter.grad, 0.5 * want)
    # First-order is not the exact gradient: the second-order terms are left out.
    exact = torch.autograd.grad(_query_loss(encoder, "all"), list(encoder.parameters()))
    pairs = zip(exact, encoder.parameters(), strict=True)
    assert not all(torch.allclose(0.5 * e, p.grad) for e, p in pairs)


def test_weights_survive_the_flat_save_format():
    encoder = _tiny()
    adapted = adapt(
        encoder, initial_weights(encoder, 3, 4).detached(), *_batch(6, 3, 0), steps=1, lr=0.5,
        inner="all",
    )
    back = load_weights(save_weights(adapted))
    assert isinstance(back, Weights) and back.body.keys() == adapted.body.keys()
    saved = [*back.body.values(), back.head_weight, back.head_bias]
    kept = [*adapted.body.values(), adapted.head_weight, adapted.head_bias]
    for a, b in zip(saved, kept, strict=True):
        assert torch.equal(a, b)
    assert load_weights(save_weights(None)) is None


def _pool():
    """Two pre-training distributions of 28x28 patterns: six classes, eight drawings each."""
    generator = torch.Generator().manual_seed(0)
    pool = []
    for d in range(2):
        patterns = (torch.rand(3, 1, 28, 28, generator=generator) > 0.7).float()
        train = tuple(
            (p + 0.2 * torch.randn(8, 1, 28, 28, generator=generator)).clamp(0, 1)
            for p in patterns
        )
        pool.append(Distribution(f"patterns{d}", DistributionKind.PRETRAIN, train, train))
    return pool


@pytest.mark.parametrize("inner", ["all", "head"])
def test_pretraining_is_reproducible_cached_and_read_back(inner, tmp_path):
    settings = MAMLSettings(inner=inner, episodes=4, meta_batch=2, width=8, queries=2)
    first = pretrain_maml(_pool(), settings, 0, cache_dir=tmp_path, progress=False)
    path = encoder_cache_path(tmp_path, _pool(), settings, 0, settings.method)
    assert path.is_file() and path.name.startswith(f"{settings.method}-")
    again = pretrain_maml(_pool(), settings, 0, progress=False)
    cached = pretrain_maml(_pool(), settings, 0, cache_dir=tmp_path, progress=False)
    untrained = conv4(1, 8, batch_statistics=True)
    states = (first.state_dict(), again.state_dict(), cached.state_dict())
    for a, b, c in zip(*(state.values() for state in states), strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)
    pairs = zip(first.parameters(), untrained.parameters(), strict=True)
    assert not all(torch.equal(a, u) for a, u in pairs)
    assert not any(isinstance(m, nn.BatchNorm2d) and m.track_running_stats for m in first)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"inner": "body"}, "inner is 'body'"),
        ({"inner_steps": 0}, "inner_steps is 0"),
        ({"inner_lr": 0.0}, "inner_lr is 0.0"),
    ],
)
def test_bad_maml_settings_are_refused_in_one_line(changes, message):
    with pytest.raises(ValueError, match=message):
        MAMLSettings(**changes)


def _task(labels_seed, n=5):
    """A 5-way batch of 28x28 patterns: one drawing per class, labels permuted by the seed."""
    generator = torch.Generator().manual_seed(7)
    patterns = (torch.rand(5, 1, 28, 28, generator=generator) > 0.7).float()
    noise = torch.Generator().manual_seed(100 + n)
    x = (patterns + 0.1 * torch.randn(5, 1, 28, 28, generator=noise)).clamp(0, 1)
    order = torch.randperm(5, generator=torch.Generator().manual_seed(labels_seed))
    return x, order


def test_maml_learner_predicts_nothing_before_a_label_then_fits_the_batch_it_saw():
    torch.manual_seed(0)
    learner = MAMLLearner(conv4(1, 8, batch_statistics=True), 5, 8, "all", 5, 0.4)
    x, y = _task(0)
    assert torch.equal(learner.predict(x), torch.zeros(5, 5))
    learner.observe(x, y, None)
    assert bool((learner.predict(x).argmax(1) == y).all())
    assert learner.memory_bytes_by_kind()["records"] > 0


def test_cmaml_declares_a_switch_when_the_labels_change_and_restarts_from_the_slow_weights():
    torch.manual_seed(0)
    learner = CMAMLLearner(
        conv4(1, 8, batch_statistics=True), 5, 8, CMAMLOptions(steps=5, boundary_threshold=1.0)
    )
    for n in range(4):
        learner.observe(*_task(0, n), None)
    assert learner.decisions["switches"] == 0 and len(learner.buffer) == 4
    slow = [p.clone() for p in learner.encoder.parameters()]
    learner.observe(*_task(1, 9), None)  # the same drawings under other labels
    assert learner.decisions == {"switches": 1, "meta_updates": 1}
    assert len(learner.buffer) == 1
    pairs = zip(slow, learner.encoder.parameters(), strict=True)
    assert not all(torch.equal(a, b) for a, b in pairs)
    # A given boundary is taken as it is, without looking at the loss.
    learner.observe(*_task(1, 10), True)
    assert learner.decisions["switches"] == 2


def test_cmaml_meta_updates_a_long_segment_without_a_switch():
    torch.manual_seed(0)
    learner = CMAMLLearner(conv4(1, 8, batch_statistics=True), 5, 8, CMAMLOptions(meta_every=3))
    for n in range(4):
        learner.observe(*_task(0, n), False)
    assert learner.decisions == {"switches": 0, "meta_updates": 1} and learner.buffer == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [({"steps": 0}, "steps is 0"), ({"boundary_threshold": -1.0}, "boundary_threshold is -1.0")],
)
def test_bad_cmaml_options_are_refused_in_one_line(changes, message):
    with pytest.raises(ValueError, match=message):
        CMAMLOptions(**changes)


def test_each_method_has_its_own_settings_and_the_options_fall_back_on_them():
    maml, anil = MAMLSettings.of("maml"), MAMLSettings.of("anil", episodes=7)
    assert (maml.inner, maml.method, anil.inner, anil.method) == ("all", "maml", "head", "anil")
    assert anil.episodes == 7 and anil.inner_lr != maml.inner_lr
    assert MAMLOptions().resolved("anil") == (anil.test_steps, anil.inner_lr)
    assert MAMLOptions(steps=2).resolved("maml") == (2, maml.inner_lr)
    with pytest.raises(ValueError, match="method is 'reptile'"):
        MAMLSettings.of("reptile")
