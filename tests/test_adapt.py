"""``adapt(support_x, support_y)`` of the task-switching learners: a predictor, agent unchanged."""

import copy

import pytest
import torch

from lifelong.agent.switching import SwitchingLearner
from lifelong.methods.cmaml import CMAMLLearner, CMAMLOptions
from lifelong.methods.finetune import FinetuneLearner
from lifelong.methods.maml import MAMLLearner, save_weights
from lifelong.methods.online import check_support
from lifelong.methods.protonet import ProtoNetLearner
from lifelong.pretraining import conv4
from streams.omniglot_switching import omniglot_switching_pool
from streams.switching import DistributionKind


@pytest.fixture(scope="module")
def episode(shared_data):
    """A 5-way 1-shot support set of held-out characters, and queries of the same classes."""
    pool = omniglot_switching_pool(shared_data / "omniglot", 3, seed=0)
    new = next(d for d in pool if d.kind is DistributionKind.NEW)
    support = torch.stack([new.test[c][0] for c in range(5)])
    queries = torch.cat([new.test[c][1:] for c in range(5)])
    query_y = torch.arange(5).repeat_interleave(4)
    return support, torch.arange(5), queries, query_y, pool


def _learners():
    torch.manual_seed(0)
    encoder = conv4(1, 16)
    return [
        FinetuneLearner(copy.deepcopy(encoder), 16, 5, 0.1, 1),
        ProtoNetLearner(copy.deepcopy(encoder), 5),
        SwitchingLearner(copy.deepcopy(encoder), 5, memory_size=20),
        MAMLLearner(conv4(1, 16, batch_statistics=True), 5, 16, "all", 10, 0.1),
        MAMLLearner(conv4(1, 16, batch_statistics=True), 5, 16, "head", 10, 0.4),
        CMAMLLearner(conv4(1, 16, batch_statistics=True), 5, 16, CMAMLOptions(meta_every=1)),
    ]


def _state(learner):
    if isinstance(learner, FinetuneLearner):
        return {k: v.clone() for k, v in learner.model.state_dict().items()}
    if isinstance(learner, MAMLLearner | CMAMLLearner):
        weights = save_weights(learner.fast)
        return {**learner.encoder.state_dict(), **{f"fast.{k}": v for k, v in weights.items()}}
    if isinstance(learner, SwitchingLearner):
        tasks = learner.tasks
        records = [t for i in tasks.task_ids() for t in tasks.get(i).tensors.values()]
        return [*learner.meta, *learner.head, *records, learner.samples.stored().x]
    return learner.sums.clone(), learner.counts.clone()


def _same(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize(
    "index", range(6), ids=["finetune", "protonet", "lifelong", "maml", "anil", "cmaml"]
)
def test_adapt_returns_a_predictor_and_leaves_the_learner_unchanged(episode, index):
    support, support_y, queries, query_y, pool = episode
    learner = _learners()[index]
    drawings = pool[0].train
    for _ in range(3):  # some history, so that there is state to disturb
        x = torch.stack([drawings[c][0] for c in range(5)])
        learner.observe(x, torch.arange(5), None)
    before = _state(learner)
    predict = learner.adapt(support, support_y)
    logits = predict(queries)
    assert logits.shape == (len(query_y), 5)
    assert bool(torch.isfinite(logits).all())
    assert _same(before, _state(learner))


def test_protonet_adapt_puts_each_support_drawing_nearest_its_own_label(episode):
    support, support_y, *_ = episode
    predict = _learners()[1].adapt(support, support_y)
    assert torch.equal(predict(support).argmax(1), support_y)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([0, 2, 3], r"number the classes 0..N-1 with every one present \(missing \[1\]\)"),
        ([1, 2, 3], r"support labels are \[1, 2, 3\]; number the classes 0..N-1"),
        ([0, 1], "support has 3 inputs and 2 labels"),
    ],
)
def test_a_malformed_support_set_is_refused_in_one_line(labels, message):
    with pytest.raises(ValueError, match=message):
        check_support(torch.zeros(3, 1, 28, 28), torch.tensor(labels))


def test_float_labels_are_refused():
    with pytest.raises(ValueError, match="pass 1-D integer labels"):
        check_support(torch.zeros(2, 1, 28, 28), torch.tensor([0.0, 1.0]))
