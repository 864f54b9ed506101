"""ProtoNet pre-training: the maths, the cache, and its few-shot check on held-out classes."""

import pytest
import torch

from lifelong.pretraining import (
    ProtoNetSettings,
    conv4,
    fewshot_accuracy,
    pretrain_protonet,
    prototype_logits,
    rotated_classes,
)
from streams.omniglot_switching import omniglot_switching_pool
from streams.switching import DistributionKind

TINY = ProtoNetSettings(episodes=40, ways=5, queries=3, width=16)


@pytest.fixture(scope="module")
def pool(shared_data):
    return omniglot_switching_pool(shared_data / "omniglot", 3, seed=0)


def _kind(pool, kind):
    return [d for d in pool if d.kind is kind]


def test_prototype_logits_are_negative_squared_distances_to_class_means():
    support = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0]])
    labels = torch.tensor([0, 0, 1])
    queries = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    logits = prototype_logits(support, labels, queries, ways=2)
    # Prototypes (1, 0) and (0, 4).
    assert torch.allclose(logits, torch.tensor([[0.0, -17.0], [-10.0, -1.0]]))


def test_conv4_gives_width_features_on_28x28():
    assert conv4(1, 16)(torch.zeros(2, 1, 28, 28)).shape == (2, 16)


def test_rotations_are_classes_of_their_own(pool):
    pretraining = _kind(pool, DistributionKind.PRETRAIN)
    classes = rotated_classes(pretraining)
    assert len(classes) == 4 * sum(d.n_classes for d in pretraining)
    assert torch.equal(classes[1], torch.rot90(pretraining[0].train[0], 1, dims=(-2, -1)))


def test_pretraining_is_cached_by_settings_and_seed(pool, tmp_path):
    pretraining = _kind(pool, DistributionKind.PRETRAIN)
    first = pretrain_protonet(pretraining, TINY, seed=0, cache_dir=tmp_path, progress=False)
    files = list(tmp_path.glob("protonet-*.pt"))
    assert len(files) == 1
    again = pretrain_protonet(pretraining, TINY, seed=0, cache_dir=tmp_path, progress=False)
    for key, value in first.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
    pretrain_protonet(pretraining, TINY, seed=1, cache_dir=tmp_path, progress=False)
    assert len(list(tmp_path.glob("protonet-*.pt"))) == 2


def test_pretraining_beats_chance_on_classes_it_never_saw(pool):
    encoder = pretrain_protonet(
        _kind(pool, DistributionKind.PRETRAIN), TINY, seed=0, progress=False
    )
    held_out = _kind(pool, DistributionKind.NEW)
    accuracy, half_width = fewshot_accuracy(encoder, held_out, ways=5, episodes=50)
    assert accuracy > 0.4 and half_width < 0.1


def test_bad_settings_and_impossible_episodes_are_refused(pool):
    with pytest.raises(ValueError, match="episodes is 0"):
        ProtoNetSettings(episodes=0)
    with pytest.raises(ValueError, match="episodes are 2000-way"):
        pretrain_protonet(pool[:1], ProtoNetSettings(ways=2000), seed=0, progress=False)
    with pytest.raises(ValueError, match="a pre-training class has 15 drawings"):
        pretrain_protonet(pool[:1], ProtoNetSettings(ways=5, queries=15), seed=0, progress=False)
    with pytest.raises(ValueError, match="60-way 1-shot needs 60 classes"):
        fewshot_accuracy(conv4(1, 8), pool[-1:], ways=60)
