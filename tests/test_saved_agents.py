"""Saved task-switching agents: the round trip, image preprocessing, and refusals in one line."""

import copy
import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from lifelong import AgentLoadError, load_agent
from lifelong.agent.switching import SwitchingLearner
from lifelong.methods.cmaml import CMAMLLearner, CMAMLOptions
from lifelong.methods.finetune import FinetuneLearner
from lifelong.methods.maml import MAMLLearner
from lifelong.methods.protonet import ProtoNetLearner
from lifelong.prequential import prequential_accuracies
from lifelong.pretraining import conv4
from lifelong.saved_agents import save_agent
from streams.switching import Distribution, DistributionKind, build_switching_stream

WIDTH = 8


def _stream(steps: int, seed: int):
    """Three distributions of 28x28 patterns, five classes each, fixed labels."""
    generator = torch.Generator().manual_seed(0)
    pool = []
    for d in range(3):
        patterns = (torch.rand(5, 1, 28, 28, generator=generator) > 0.7).float()

        def drawings(pattern, n):
            return (pattern + 0.2 * torch.randn(n, 1, 28, 28, generator=generator)).clamp(0, 1)

        train = tuple(drawings(p, 10) for p in patterns)
        test = tuple(drawings(p, 3) for p in patterns)
        pool.append(Distribution(f"patterns{d}", DistributionKind.PRETRAIN, train, test))
    return build_switching_stream(
        "patterns", pool, n_steps=steps, seed=seed, ways=5, p_stay=0.8, labels="fixed"
    )


def _learners():
    torch.manual_seed(0)
    encoder = conv4(1, WIDTH)
    return {
        "finetune": FinetuneLearner(copy.deepcopy(encoder), WIDTH, 5, 0.1, 1),
        "protonet": ProtoNetLearner(copy.deepcopy(encoder), 5),
        "lifelong": SwitchingLearner(copy.deepcopy(encoder), 5, memory_size=30, seed=3),
        "maml": MAMLLearner(_maml_encoder(), 5, WIDTH, "all", 10, 0.1),
        "anil": MAMLLearner(_maml_encoder(), 5, WIDTH, "head", 10, 0.4),
        # Meta-updates every few batches, so that Adam's state is part of what is saved.
        "cmaml": CMAMLLearner(_maml_encoder(), 5, WIDTH, CMAMLOptions(meta_every=3)),
    }


def _maml_encoder():
    return conv4(1, WIDTH, batch_statistics=True)


def _save(learner, folder, name="lifelong"):
    save_agent(learner, folder, name=name, seed=0, encoder_width=WIDTH, input_shape=(1, 28, 28))


@pytest.mark.parametrize("name", ["finetune", "protonet", "lifelong", "maml", "anil", "cmaml"])
def test_a_loaded_agent_predicts_adapts_and_keeps_learning_exactly_as_the_saved_one(name, tmp_path):
    learner = _learners()[name]
    prequential_accuracies(_stream(40, seed=0), learner)
    _save(learner, tmp_path / "agent", name)
    loaded = load_agent(tmp_path / "agent")
    assert (loaded.name, loaded.seed) == (name, 0)

    probe = _stream(5, seed=1)
    steps = list(probe.steps())
    batch = torch.cat([s.x for s in steps])
    assert torch.equal(loaded.predict(batch), learner.predict(batch))
    support, support_y = steps[0].x, steps[0].y
    assert torch.equal(
        loaded.adapt(support, support_y)(batch), learner.adapt(support, support_y)(batch)
    )

    # Continuing the stream from the save gives the same accuracies, step for step.
    more = _stream(30, seed=2)
    np.testing.assert_array_equal(
        prequential_accuracies(more, loaded.learner), prequential_accuracies(more, learner)
    )


def test_the_lifelong_agent_keeps_its_task_memory_and_samples(tmp_path):
    learner = _learners()["lifelong"]
    prequential_accuracies(_stream(60, seed=0), learner)
    _save(learner, tmp_path / "agent")
    loaded = load_agent(tmp_path / "agent").learner
    assert isinstance(loaded, SwitchingLearner)
    assert loaded.tasks.task_ids() == learner.tasks.task_ids()
    assert torch.equal(loaded.samples.stored().x, learner.samples.stored().x)
    assert loaded.decisions == learner.decisions
    assert (tmp_path / "agent" / "task_memory" / "manifest.json").is_file()


def test_saving_again_replaces_the_earlier_save_and_leaves_no_temporary_folder(tmp_path):
    learners = _learners()
    _save(learners["protonet"], tmp_path / "agent", "protonet")
    _save(learners["lifelong"], tmp_path / "agent")
    assert load_agent(tmp_path / "agent").name == "lifelong"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agent"]


def test_preprocess_reads_a_drawing_as_the_stream_does(tmp_path):
    image = Image.new("L", (105, 105), color=255)
    ImageDraw.Draw(image).line((10, 50, 95, 50), fill=0, width=9)
    image.save(tmp_path / "drawing.png")
    learner = _learners()["protonet"]
    _save(learner, tmp_path / "agent", "protonet")
    agent = load_agent(tmp_path / "agent")
    from_file = agent.preprocess(tmp_path / "drawing.png")
    assert from_file.shape == (1, 28, 28) and from_file.dtype == torch.float32
    assert torch.equal(from_file, agent.preprocess(image))
    # Strokes become 1 and the background 0, as Omniglot's loader gives them.
    assert float(from_file[0, 13, 14]) == pytest.approx(1.0)
    assert float(from_file[0, 2, 2]) == 0.0


def _corrupt_state(folder):
    (folder / "state.pt").write_bytes(b"not a tensor file")


def _garbage_description(folder):
    (folder / "agent.json").write_text("{ not json")


def _future_version(folder):
    description = json.loads((folder / "agent.json").read_text())
    description["format_version"] = 99
    (folder / "agent.json").write_text(json.dumps(description))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_corrupt_state, r"is corrupt: state.pt is missing or does not match its checksum"),
        (_garbage_description, r"is corrupt: agent.json: Expecting"),
        (_future_version, r"has format version 99; this version of lifelong reads version 1"),
    ],
)
def test_a_damaged_save_is_refused_in_one_line(tmp_path, damage, message):
    _save(_learners()["protonet"], tmp_path / "agent", "protonet")
    damage(tmp_path / "agent")
    with pytest.raises(AgentLoadError, match=message) as error:
        load_agent(tmp_path / "agent")
    assert len(str(error.value).splitlines()) == 1


def test_a_folder_that_is_not_a_saved_agent_is_refused(tmp_path):
    with pytest.raises(AgentLoadError, match=r"is not a saved agent \(no agent.json\)"):
        load_agent(tmp_path)
