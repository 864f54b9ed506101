"""The maths of the task-switching fast weights: ProtoNet start, adaptation, meta-gradient."""

import pytest
import torch
from torch.nn.functional import cross_entropy

from lifelong.agent import fast_weights as fw
from lifelong.pretraining import prototype_logits


def _meta(dim: int, seed: int = 0) -> fw.MetaParameters:
    """Meta-parameters away from their initial values, in float64, for exact checks."""
    generator = torch.Generator().manual_seed(seed)

    def noise(*shape: int) -> torch.Tensor:
        return 0.1 * torch.randn(*shape, generator=generator, dtype=torch.float64)

    start = fw.MetaParameters.initial(dim, 0.05)
    return fw.MetaParameters(
        projection=start.projection.double() + noise(dim, dim),
        beta=noise(dim),
        log_lr=start.log_lr.double() + noise(dim),
        log_lr_bias=start.log_lr_bias.double() + noise(1),
        log_temperature=noise(1),
    )


def _task(ways: int = 3, dim: int = 4, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    centres = 2 * torch.randn(ways, dim, generator=generator, dtype=torch.float64)
    y = torch.arange(ways).repeat(2)
    support = centres[y] + torch.randn(len(y), dim, generator=generator, dtype=torch.float64)
    query = centres[y] + torch.randn(len(y), dim, generator=generator, dtype=torch.float64)
    prototypes = torch.stack([support[y == c].mean(0) for c in range(ways)])
    return prototypes, (support, y), (query, y)


def test_the_initial_head_gives_protonet_probabilities():
    meta = fw.MetaParameters(*(t.double() for t in fw.MetaParameters.initial(4, 0.1)))
    prototypes, (support, y), (query, _) = _task()
    head = fw.initial_head(prototypes, meta)
    ours = fw.head_logits(query, head, meta).softmax(1)
    theirs = prototype_logits(support, y, query, 3).softmax(1)
    torch.testing.assert_close(ours, theirs)


def test_adaptation_lowers_the_support_loss():
    meta = _meta(4)
    prototypes, (support, y), _ = _task()
    z = fw.transform(support, meta)
    head = fw.initial_head(prototypes, meta)
    adapted = fw.adapt_head(head, z, y, meta, steps=5)
    before = cross_entropy(fw.head_logits(z, head, meta), y)
    after = cross_entropy(fw.head_logits(z, adapted, meta), y)
    assert float(after) < float(before)


def test_zero_steps_leave_the_head_as_it_started():
    meta = _meta(4)
    prototypes, (support, y), _ = _task()
    head = fw.initial_head(prototypes, meta)
    adapted = fw.adapt_head(head, fw.transform(support, meta), y, meta, steps=0)
    torch.testing.assert_close(adapted.weight, head.weight)


def test_the_meta_gradient_of_the_learning_rates_matches_the_chain_rule_by_hand():
    """One inner step: d L_q / d log(lr_k) = -lr_k * sum_r dL_q/dW1[r, k] * g0[r, k]."""
    meta = _meta(4)
    prototypes, support, query = _task()
    _, grads = fw.meta_gradients(meta, prototypes, support, query, steps=1)

    z_support = fw.transform(support[0], meta)
    head = fw.initial_head(prototypes, meta)
    weight = head.weight.clone().requires_grad_(True)
    bias = head.bias.clone().requires_grad_(True)
    inner = cross_entropy(fw.head_logits(z_support, fw.FastWeights(weight, bias), meta), support[1])
    g_weight, g_bias = torch.autograd.grad(inner, (weight, bias))
    lr, lr_bias = meta.log_lr.exp(), meta.log_lr_bias.exp()
    weight1 = (head.weight - lr * g_weight).requires_grad_(True)
    bias1 = (head.bias - lr_bias * g_bias).requires_grad_(True)
    z_query = fw.transform(query[0], meta)
    outer = cross_entropy(fw.head_logits(z_query, fw.FastWeights(weight1, bias1), meta), query[1])
    q_weight, q_bias = torch.autograd.grad(outer, (weight1, bias1))

    torch.testing.assert_close(grads.log_lr, -lr * (q_weight * g_weight).sum(0))
    torch.testing.assert_close(grads.log_lr_bias, -lr_bias * (q_bias * g_bias).sum(0, keepdim=True))


@pytest.mark.parametrize("field", fw.MetaParameters._fields)
def test_the_meta_gradient_reaches_every_meta_parameter_and_matches_finite_differences(field):
    meta = _meta(4)
    prototypes, support, query = _task()
    _, grads = fw.meta_gradients(meta, prototypes, support, query, steps=3)
    gradient = getattr(grads, field)
    assert float(gradient.abs().sum()) > 0
    direction = torch.randn(gradient.shape, generator=torch.Generator().manual_seed(2)).double()
    eps = 1e-6

    def loss_at(shift: float) -> float:
        moved = meta._replace(**{field: getattr(meta, field) + shift * direction})
        return fw.meta_gradients(moved, prototypes, support, query, steps=3)[0]

    numeric = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
    assert float((gradient * direction).sum()) == pytest.approx(numeric, rel=1e-5, abs=1e-8)


def test_meta_gradients_leave_the_meta_parameters_untouched():
    meta = _meta(4)
    copies = [t.clone() for t in meta]
    prototypes, support, query = _task()
    fw.meta_gradients(meta, prototypes, support, query, steps=2)
    for before, after in zip(copies, meta, strict=True):
        assert torch.equal(before, after)
        assert after.grad is None


def _block_task(ways: int = 3, dim: int = 4, seed: int = 3):
    """A linear block over ``dim`` inputs, offsets away from zero, support and query inputs."""
    torch.manual_seed(seed)
    block = torch.nn.Sequential(torch.nn.Linear(dim, dim), torch.nn.Tanh()).double()
    generator = torch.Generator().manual_seed(seed)
    offsets = {
        name: 0.1 * torch.randn(p.shape, generator=generator, dtype=torch.float64)
        for name, p in block.named_parameters()
    }
    _, support, query = _task(ways, dim, seed)
    return block, offsets, support, query


@pytest.mark.parametrize("name", ["0.weight", "0.bias"])
def test_the_block_meta_gradient_reaches_the_offsets_and_matches_finite_differences(name):
    meta = _meta(4)
    block, offsets, support, query = _block_task()
    _, _, grads = fw.block_meta_gradients(meta, block, offsets, support, query, 3, steps=3)
    gradient = grads[name]
    assert float(gradient.abs().sum()) > 0
    direction = torch.randn(gradient.shape, generator=torch.Generator().manual_seed(4)).double()
    eps = 1e-6

    def loss_at(shift: float) -> float:
        moved = {**offsets, name: offsets[name] + shift * direction}
        return fw.block_meta_gradients(meta, block, moved, support, query, 3, steps=3)[0]

    numeric = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
    assert float((gradient * direction).sum()) == pytest.approx(numeric, rel=1e-5, abs=1e-8)


def test_the_block_meta_gradient_of_the_meta_parameters_is_that_of_the_blocks_features():
    meta = _meta(4)
    block, offsets, support, query = _block_task()
    loss, grads, _ = fw.block_meta_gradients(meta, block, offsets, support, query, 3, steps=2)
    with torch.no_grad():
        support_f = fw.block_features(block, support[0], offsets)
        query_f = fw.block_features(block, query[0], offsets)
    prototypes = fw.class_means(support_f, support[1], 3)
    expected_loss, expected = fw.meta_gradients(
        meta, prototypes, (support_f, support[1]), (query_f, query[1]), steps=2
    )
    assert loss == pytest.approx(expected_loss, rel=1e-12)
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want)


def test_a_clipped_step_is_never_longer_than_its_length():
    offsets = {"w": torch.zeros(3), "b": torch.zeros(1)}
    large = {"w": torch.tensor([30.0, 0.0, 40.0]), "b": torch.tensor([0.0])}
    moved = fw.clipped_step(offsets, large, 0.1)
    assert float(torch.cat([moved["w"], moved["b"]]).norm()) == pytest.approx(0.1)
    small = {"w": torch.tensor([0.3, 0.0, 0.4]), "b": torch.tensor([0.0])}
    torch.testing.assert_close(fw.clipped_step(offsets, small, 0.1)["w"], -0.1 * small["w"])


def test_reptile_moves_the_start_its_share_of_the_way():
    start = {"w": torch.zeros(2)}
    moved = fw.moved_towards(start, {"w": torch.tensor([1.0, -2.0])}, 0.25)
    torch.testing.assert_close(moved["w"], torch.tensor([0.25, -0.5]))


def test_the_encoder_splits_into_a_trunk_and_its_last_weighted_block():
    from lifelong.pretraining import conv4

    encoder = conv4(1, 8).eval()
    split = fw.split_encoder(encoder)
    assert split is not None
    trunk, block = split
    assert isinstance(block[0], torch.nn.Conv2d) and len(block) == 5
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(block(trunk(x)), encoder(x))
        torch.testing.assert_close(
            fw.block_features(block, trunk(x), fw.zero_offsets(block)), encoder(x)
        )
    assert fw.split_encoder(torch.nn.Flatten()) is None
    assert fw.split_encoder(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.ReLU())) is None
