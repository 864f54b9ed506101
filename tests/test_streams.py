"""Streams: the contract every registered stream obeys, the built-ins' protocols, the helper
for third-party streams (``tensor_stream``) and the three ways to reach a stream by name."""

import importlib.metadata
import itertools
import random
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import streams.registry
from streams import (
    Scenario,
    StreamError,
    StreamSpec,
    TaskStream,
    UnknownStreamError,
    available_streams,
    make_stream,
    recurring_schedule,
    register_stream,
    tensor_stream,
)
from streams.data import load_mnist
from streams.transforms import gem_angles, rotate_images

# --- helpers ---------------------------------------------------------------------------------


def experience_tensors(experience) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All (x, y, task label) of one experience, in dataset order."""
    dataset = experience.dataset
    loader = torch.utils.data.DataLoader(dataset, batch_size=len(dataset), shuffle=False)
    x, y, t = next(iter(loader))
    return x, y, t


def stream_tensors(stream: TaskStream) -> list[tuple[torch.Tensor, ...]]:
    return [
        experience_tensors(experience)
        for part in (stream.benchmark.train_stream, stream.benchmark.test_stream)
        for experience in part
    ]


def write_image_folder(root: Path, n_classes: int = 4, per_class: int = 5) -> Path:
    """A tiny ``<class>/<image>.png`` folder: class c is a bright square at a c-dependent spot."""
    rng = np.random.default_rng(0)
    for c in range(n_classes):
        folder = root / f"class_{c}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 40, (12, 12), dtype=np.uint8)
            pixels[c : c + 4, c : c + 4] = 255
            Image.fromarray(pixels).save(folder / f"img_{i:02d}.png")
    return root


# --- the contract, over every registered stream ----------------------------------------------

MNIST_DOMAIN = {"train_per_task": 100, "test_per_task": 100}

# Small, fast specs; shuffle_classes makes the split streams depend on the seed, so every
# stream is checked for "a different seed gives different data".
CONTRACT_SPECS: dict[str, dict] = {
    "split-digits": {"n_tasks": 3, "options": {"shuffle_classes": True}},
    "recurring-split-digits": {"n_tasks": 4, "options": {"n_distributions": 2}},
    "split-mnist1d": {"n_tasks": 2, "options": {"shuffle_classes": True}},
    "split-mnist": {"n_tasks": 2, "data": "mnist", "options": {"shuffle_classes": True}},
    "permuted-mnist": {"n_tasks": 3, "data": "mnist", "options": MNIST_DOMAIN},
    "rotated-mnist": {"n_tasks": 3, "data": "mnist", "options": MNIST_DOMAIN},
    "recurring-permuted-mnist": {
        "n_tasks": 4,
        "data": "mnist",
        "options": {**MNIST_DOMAIN, "n_distributions": 2},
    },
    "recurring-rotated-mnist": {
        "n_tasks": 4,
        "data": "mnist",
        "options": {**MNIST_DOMAIN, "n_distributions": 2},
    },
    "split-omniglot": {"n_tasks": 2, "data": "omniglot", "options": {"shuffle_classes": True}},
    "image-folder": {"n_tasks": 2, "data": "images", "options": {"shuffle_classes": True}},
}

# Task-switching streams are no sequence of Avalanche experiences: their own contract is in
# tests/test_streams_switching.py.
SWITCHING_STREAMS = {"omniglot-switching"}
ALL_STREAMS = sorted(set(available_streams()) - SWITCHING_STREAMS)
BUILTIN_STREAMS = [
    name
    for name in ALL_STREAMS
    if streams.registry.resolve_stream(name).__module__ == "streams.builtin"
]


@pytest.fixture(scope="module")
def contract_spec(shared_data, tmp_path_factory):
    images = write_image_folder(tmp_path_factory.mktemp("images"))
    roots = {
        "mnist": shared_data / "mnist",
        "omniglot": shared_data / "omniglot",
        "images": images,
        None: None,
    }

    def spec_for(name: str, seed: int = 0) -> StreamSpec:
        if name not in CONTRACT_SPECS:  # a stream registered by someone else: its defaults
            return StreamSpec(seed=seed)
        config = CONTRACT_SPECS[name]
        return StreamSpec(
            n_tasks=config["n_tasks"],
            seed=seed,
            data_root=roots[config.get("data")],
            options=config["options"],
        )

    return spec_for


@pytest.fixture(scope="module")
def built(contract_spec):
    cache: dict[tuple[str, int], TaskStream] = {}

    def build(name: str, seed: int = 0) -> TaskStream:
        if (name, seed) not in cache:
            cache[name, seed] = make_stream(name, contract_spec(name, seed))
        return cache[name, seed]

    return build


def test_every_builtin_is_registered_with_a_description_and_a_contract_spec():
    names = available_streams()
    assert set(CONTRACT_SPECS) == set(BUILTIN_STREAMS)
    assert all(names[name].strip() for name in BUILTIN_STREAMS)


@pytest.mark.parametrize("name", ALL_STREAMS)
def test_contract_declared_facts_match_the_data(name, built, contract_spec):
    stream = built(name)
    spec = contract_spec(name)
    assert isinstance(stream, TaskStream)
    assert isinstance(stream.scenario, Scenario)
    if name in BUILTIN_STREAMS:
        assert stream.name == name
        assert stream.description
        assert stream.n_tasks == spec.n_tasks
    train, test = stream.benchmark.train_stream, stream.benchmark.test_stream
    assert len(train) == len(test) == stream.n_tasks
    assert len(stream.task_identities) == stream.n_tasks
    for part in (train, test):
        for index, experience in enumerate(part):
            x, y, t = experience_tensors(experience)
            assert experience.current_experience == index
            assert len(x) > 0
            assert tuple(x.shape[1:]) == stream.input_shape
            assert x.dtype == torch.float32
            assert bool(torch.isfinite(x).all())
            assert int(y.min()) >= 0
            assert int(y.max()) < stream.n_classes
            expected_label = index if stream.scenario is Scenario.TASK_INCREMENTAL else 0
            assert set(t.tolist()) == {expected_label}
            assert experience.task_labels == [expected_label]
            assert set(experience.classes_in_this_experience) == set(y.tolist())


@pytest.mark.parametrize("name", ALL_STREAMS)
def test_contract_same_seed_gives_bit_identical_data(name, built, contract_spec):
    again = make_stream(name, contract_spec(name, seed=0))
    first = stream_tensors(built(name))
    second = stream_tensors(again)
    assert len(first) == len(second)
    for a, b in zip(first, second, strict=True):
        for tensor_a, tensor_b in zip(a, b, strict=True):
            assert tensor_a.dtype == tensor_b.dtype
            assert torch.equal(tensor_a, tensor_b)
    assert again.task_identities == built(name).task_identities


@pytest.mark.parametrize("name", ALL_STREAMS)
def test_contract_another_seed_gives_other_data(name, built):
    if name not in CONTRACT_SPECS:
        pytest.skip(f"stream {name!r}: no CONTRACT_SPECS entry says its data depend on the seed")
    first = stream_tensors(built(name, seed=0))
    other = stream_tensors(built(name, seed=1))
    differs = any(
        a[0].shape != b[0].shape or not torch.equal(a[0], b[0]) or not torch.equal(a[1], b[1])
        for a, b in zip(first, other, strict=True)
    )
    assert differs


@pytest.mark.parametrize("name", ALL_STREAMS)
def test_contract_leaves_the_global_generators_alone(name, contract_spec):
    torch_state = torch.random.get_rng_state()
    numpy_state = np.random.get_state()[1].copy()
    python_state = random.getstate()
    make_stream(name, contract_spec(name, seed=3))
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], numpy_state)
    assert random.getstate() == python_state


@pytest.mark.parametrize("name", ALL_STREAMS)
def test_contract_an_avalanche_strategy_trains_on_it(name, built):
    from avalanche.training.supervised import Naive

    stream = built(name)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(int(np.prod(stream.input_shape)), stream.n_classes)
    )
    strategy = Naive(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        criterion=torch.nn.CrossEntropyLoss(),
        train_mb_size=64,
        train_epochs=1,
        eval_mb_size=256,
        evaluator=None,
    )
    strategy.train(stream.benchmark.train_stream[0])
    results = strategy.eval(stream.benchmark.test_stream[:1])
    assert isinstance(results, dict)
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())


@pytest.mark.parametrize("name", BUILTIN_STREAMS)
def test_builtins_reject_bad_numbers_and_unknown_options(name, contract_spec):
    spec = contract_spec(name)
    for bad in (
        StreamSpec(n_tasks=0, data_root=spec.data_root, options=spec.options),
        StreamSpec(n_tasks=-2, data_root=spec.data_root, options=spec.options),
        StreamSpec(seed=-1, data_root=spec.data_root, options=spec.options),
    ):
        with pytest.raises(StreamError, match=f"^stream '{name}': (n_tasks|seed) is"):
            make_stream(name, bad)
    typo = StreamSpec(n_tasks=spec.n_tasks, data_root=spec.data_root, options={"n_taks": 2})
    with pytest.raises(StreamError, match=f"^stream '{name}': unknown option 'n_taks'; valid"):
        make_stream(name, typo)


# --- defaults of the built-ins ---------------------------------------------------------------


def sizes(stream: TaskStream) -> tuple[list[int], list[int]]:
    return (
        [len(e.dataset) for e in stream.benchmark.train_stream],
        [len(e.dataset) for e in stream.benchmark.test_stream],
    )


def test_split_digits_defaults_are_five_two_class_tasks():
    stream = make_stream("split-digits")
    assert (stream.n_tasks, stream.n_classes, stream.input_shape) == (5, 10, (1, 8, 8))
    assert stream.scenario is Scenario.CLASS_INCREMENTAL
    classes = [set(e.classes_in_this_experience) for e in stream.benchmark.train_stream]
    assert classes == [{0, 1}, {2, 3}, {4, 5}, {6, 7}, {8, 9}]
    train, test = sizes(stream)
    assert sum(train) == 1438
    assert sum(test) == 359
    assert stream.task_identities == (0, 1, 2, 3, 4)


def test_split_mnist_defaults(shared_data):
    stream = make_stream("split-mnist", StreamSpec(data_root=shared_data / "mnist"))
    assert (stream.n_tasks, stream.n_classes, stream.input_shape) == (5, 10, (1, 28, 28))
    train, test = sizes(stream)
    assert (sum(train), sum(test)) == (8000, 2000)


@pytest.mark.parametrize("name", ["rotated-mnist", "permuted-mnist"])
def test_gem_streams_default_to_twenty_tasks_of_a_thousand(name, shared_data):
    stream = make_stream(name, StreamSpec(data_root=shared_data))
    assert stream.n_tasks == 20
    assert stream.scenario is Scenario.DOMAIN_INCREMENTAL
    assert (stream.n_classes, stream.input_shape) == (10, (1, 28, 28))
    assert sizes(stream) == ([1000] * 20, [2000] * 20)
    assert all(e.task_labels == [0] for e in stream.benchmark.train_stream)


def test_split_omniglot_defaults_to_one_task_per_alphabet(shared_data):
    stream = make_stream("split-omniglot", StreamSpec(data_root=shared_data))
    assert (stream.n_tasks, stream.n_classes, stream.input_shape) == (5, 136, (1, 28, 28))
    train, test = sizes(stream)
    assert sum(train) == 136 * 15
    assert sum(test) == 136 * 5
    seen = [set(e.classes_in_this_experience) for e in stream.benchmark.train_stream]
    assert set().union(*seen) == set(range(136))
    assert sum(len(s) for s in seen) == 136


def test_split_mnist1d_defaults():
    stream = make_stream("split-mnist1d")
    assert (stream.n_tasks, stream.n_classes, stream.input_shape) == (5, 10, (1, 40))
    train, test = sizes(stream)
    assert (sum(train), sum(test)) == (4000, 1000)


# --- split streams ---------------------------------------------------------------------------


def test_classes_per_task_and_the_task_incremental_scenario():
    spec = StreamSpec(options={"classes_per_task": 3, "scenario": "task-incremental"})
    stream = make_stream("split-digits", spec)
    assert stream.n_tasks == 3
    assert stream.n_classes == 9
    assert stream.scenario is Scenario.TASK_INCREMENTAL
    assert [e.task_labels for e in stream.benchmark.test_stream] == [[0], [1], [2]]
    classes = [set(e.classes_in_this_experience) for e in stream.benchmark.test_stream]
    assert classes == [{0, 1, 2}, {3, 4, 5}, {6, 7, 8}]


def test_shuffled_classes_are_renumbered_in_order_of_appearance():
    stream = make_stream("split-digits", StreamSpec(seed=5, options={"shuffle_classes": True}))
    classes = [set(e.classes_in_this_experience) for e in stream.benchmark.train_stream]
    assert classes == [{0, 1}, {2, 3}, {4, 5}, {6, 7}, {8, 9}]
    plain = make_stream("split-digits")
    x_shuffled, _, _ = experience_tensors(stream.benchmark.train_stream[0])
    x_plain, _, _ = experience_tensors(plain.benchmark.train_stream[0])
    assert x_shuffled.shape != x_plain.shape or not torch.equal(x_shuffled, x_plain)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (StreamSpec(n_tasks=6), "ask for at most 5 tasks"),
        (StreamSpec(n_tasks=4, options={"classes_per_task": 3}), "ask for at most 3 tasks"),
        (StreamSpec(options={"classes_per_task": 0}), "classes_per_task=0; pass a positive"),
        (StreamSpec(options={"classes_per_task": 11}), "11 classes per task .* at most 10"),
        (StreamSpec(options={"scenario": "domain-incremental"}), "scenario='domain-incremental'"),
        (StreamSpec(options={"shuffle_classes": "maybe"}), "shuffle_classes='maybe'"),
        (StreamSpec(options={"clases_per_task": 2}), "valid options: classes_per_task, scen"),
    ],
)
def test_split_stream_errors_are_one_line(spec, message):
    with pytest.raises(StreamError, match=message) as caught:
        make_stream("split-digits", spec)
    text = str(caught.value)
    assert text.startswith("stream 'split-digits': ")
    assert "\n" not in text


def test_options_given_as_strings_are_parsed():
    spec = StreamSpec(options={"classes_per_task": "5", "shuffle_classes": "false"})
    assert make_stream("split-digits", spec).n_tasks == 2


def test_leftover_classes_are_warned_about(tmp_path):
    root = write_image_folder(tmp_path / "five", n_classes=5)
    with pytest.warns(UserWarning, match="leave 1 unused"):
        stream = make_stream("image-folder", StreamSpec(data_root=root))
    assert (stream.n_tasks, stream.n_classes) == (2, 4)


def test_image_folder_options_and_required_root(tmp_path):
    root = write_image_folder(tmp_path / "imgs")
    spec = StreamSpec(data_root=root, options={"channels": 3, "image_size": 16})
    stream = make_stream("image-folder", spec)
    assert stream.input_shape == (3, 16, 16)
    assert sizes(stream) == ([8, 8], [2, 2])
    with pytest.raises(StreamError, match="^stream 'image-folder' needs a data root; pass --data"):
        make_stream("image-folder")
    with pytest.raises(StreamError, match="channels is 2; pass 1"):
        make_stream("image-folder", StreamSpec(data_root=root, options={"channels": 2}))


def test_omniglot_blocks_of_characters(shared_data):
    spec = StreamSpec(
        n_tasks=3,
        data_root=shared_data,
        options={
            "split_by": "characters",
            "characters_per_task": 20,
            "scenario": "task-incremental",
        },
    )
    stream = make_stream("split-omniglot", spec)
    assert (stream.n_tasks, stream.n_classes) == (3, 60)
    assert sizes(stream) == ([300] * 3, [100] * 3)
    assert [e.task_labels for e in stream.benchmark.train_stream] == [[0], [1], [2]]


def test_omniglot_option_errors(shared_data):
    with pytest.raises(StreamError, match="at most 5 tasks"):
        make_stream("split-omniglot", StreamSpec(n_tasks=6, data_root=shared_data))
    with pytest.raises(StreamError, match="characters_per_task applies only with split_by"):
        make_stream(
            "split-omniglot",
            StreamSpec(data_root=shared_data, options={"characters_per_task": 4}),
        )
    with pytest.raises(StreamError, match="split_by='font'; choose one of 'alphabet'"):
        make_stream(
            "split-omniglot", StreamSpec(data_root=shared_data, options={"split_by": "font"})
        )


# --- the GEM protocol ------------------------------------------------------------------------


@given(seed=st.integers(0, 2**32))
@settings(max_examples=25, deadline=None)
def test_gem_angles_fall_in_their_nine_degree_interval(seed):
    angles = gem_angles(20, seed)
    assert len(angles) == 20
    for t, angle in enumerate(angles):
        assert 9 * t <= angle < 9 * (t + 1)


def test_gem_angles_scale_with_the_number_of_tasks_and_follow_the_seed():
    for t, angle in enumerate(gem_angles(4, 0)):
        assert 45 * t <= angle < 45 * (t + 1)
    assert gem_angles(20, 0) == gem_angles(20, 0)
    assert gem_angles(20, 0) != gem_angles(20, 1)


def test_rotated_mnist_tests_on_the_held_out_images_rotated_by_the_task_angle(shared_data):
    stream = make_stream("rotated-mnist", StreamSpec(n_tasks=3, seed=4, data_root=shared_data))
    held_out = load_mnist(shared_data)
    for experience, angle in zip(stream.benchmark.test_stream, gem_angles(3, 4), strict=True):
        x, y, _ = experience_tensors(experience)
        assert torch.equal(x, rotate_images(held_out.x_test, angle))
        assert torch.equal(y, held_out.y_test)


def test_permuted_mnist_permutes_every_task_differently(shared_data):
    stream = make_stream("permuted-mnist", StreamSpec(n_tasks=2, data_root=shared_data))
    tests = [experience_tensors(e)[0].flatten(1) for e in stream.benchmark.test_stream]
    held_out = load_mnist(shared_data).x_test.flatten(1)
    for x in tests:
        assert not torch.equal(x, held_out)  # the first task is permuted too
        # The same images with their pixels moved: each image keeps its pixel values.
        assert torch.equal(x.sort(dim=1).values, held_out.sort(dim=1).values)
    assert not torch.equal(tests[0], tests[1])


def test_train_per_task_beyond_the_pool_is_refused(shared_data):
    spec = StreamSpec(n_tasks=2, data_root=shared_data, options={"train_per_task": 9000})
    with pytest.raises(StreamError, match="training pool holds 8000 images; ask for at most 8000"):
        make_stream("rotated-mnist", spec)


# --- recurring streams -----------------------------------------------------------------------


@given(
    n_distributions=st.integers(1, 8),
    extra=st.integers(0, 30),
    seed=st.integers(0, 2**32),
)
@settings(max_examples=60, deadline=None)
def test_recurring_schedule_properties(n_distributions, extra, seed):
    n_tasks = n_distributions + extra
    schedule = recurring_schedule(n_tasks, n_distributions, seed)
    assert len(schedule) == n_tasks
    assert schedule[:n_distributions] == tuple(range(n_distributions))
    assert set(schedule) == set(range(n_distributions))
    if n_distributions > 1:
        assert all(a != b for a, b in itertools.pairwise(schedule))
    counts = np.bincount(schedule, minlength=n_distributions)
    assert counts.max() - counts.min() <= 1
    assert schedule == recurring_schedule(n_tasks, n_distributions, seed)


def test_recurring_schedule_depends_on_the_seed_and_rejects_bad_sizes():
    assert recurring_schedule(20, 5, 0) != recurring_schedule(20, 5, 1)
    with pytest.raises(StreamError, match="n_tasks=3 is fewer than n_distributions=5"):
        recurring_schedule(3, 5, 0)
    with pytest.raises(StreamError, match="n_distributions is 0"):
        recurring_schedule(3, 0, 0)


@pytest.mark.parametrize("name", ["recurring-rotated-mnist", "recurring-permuted-mnist"])
def test_recurring_mnist_revisits_with_fresh_training_draws(name, shared_data):
    spec = StreamSpec(
        n_tasks=6, seed=2, data_root=shared_data, options={"n_distributions": 3, **MNIST_DOMAIN}
    )
    stream = make_stream(name, spec)
    assert stream.task_identities == recurring_schedule(6, 3, 2)
    assert stream.scenario is Scenario.DOMAIN_INCREMENTAL
    tests = [experience_tensors(e)[0] for e in stream.benchmark.test_stream]
    trains = [experience_tensors(e)[0] for e in stream.benchmark.train_stream]
    identities = stream.task_identities
    for i in range(6):
        for j in range(i + 1, 6):
            same = identities[i] == identities[j]
            assert torch.equal(tests[i], tests[j]) == same
            assert not torch.equal(trains[i], trains[j])


def test_recurring_defaults(shared_data):
    stream = make_stream("recurring-rotated-mnist", StreamSpec(data_root=shared_data))
    assert stream.n_tasks == 20
    assert stream.task_identities == recurring_schedule(20, 5, 0)
    digits = make_stream("recurring-split-digits")
    assert digits.n_tasks == 10
    assert digits.n_classes == 10
    assert digits.scenario is Scenario.CLASS_INCREMENTAL
    for experience, identity in zip(
        digits.benchmark.train_stream, digits.task_identities, strict=True
    ):
        assert set(experience.classes_in_this_experience) == {2 * identity, 2 * identity + 1}
        assert len(experience.dataset) == 100


def test_recurring_option_errors(shared_data):
    with pytest.raises(StreamError, match="^stream 'recurring-split-digits': n_distributions=6"):
        make_stream("recurring-split-digits", StreamSpec(options={"n_distributions": 6}))
    with pytest.raises(StreamError, match="^stream 'recurring-rotated-mnist': n_tasks=2 is fewer"):
        make_stream("recurring-rotated-mnist", StreamSpec(n_tasks=2, data_root=shared_data))


# --- tensor_stream: the helper for third-party streams --------------------------------------


def blobs(n_tasks: int = 2, n: int = 6, dim: int = 3) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [
        (torch.randn(n, dim, generator=generator), torch.arange(n) % 2 + 2 * t)
        for t in range(n_tasks)
    ]


def test_tensor_stream_builds_a_stream_with_defaults():
    stream = tensor_stream("blobs", "class-incremental", blobs(), blobs(), description="two")
    assert stream.scenario is Scenario.CLASS_INCREMENTAL
    assert (stream.n_tasks, stream.n_classes, stream.input_shape) == (2, 4, (3,))
    assert stream.task_identities == (0, 1)
    assert stream.description == "two"
    assert [set(e.classes_in_this_experience) for e in stream.benchmark.train_stream] == [
        {0, 1},
        {2, 3},
    ]


def test_tensor_stream_converts_dtypes_and_labels_tasks():
    tasks = [(x.double(), y.int()) for x, y in blobs(3)]
    stream = tensor_stream(
        "blobs", Scenario.TASK_INCREMENTAL, tasks, tasks, n_classes=8, task_identities=[0, 1, 0]
    )
    x, y, t = experience_tensors(stream.benchmark.train_stream[2])
    assert (x.dtype, y.dtype) == (torch.float32, torch.int64)
    assert set(t.tolist()) == {2}
    assert stream.n_classes == 8
    assert stream.task_identities == (0, 1, 0)


def _bad(index: int, x=None, y=None) -> list:
    tasks: list = blobs()
    original_x, original_y = tasks[index]
    tasks[index] = (original_x if x is None else x, original_y if y is None else y)
    return tasks


NAN_X = torch.ones(6, 3).index_put_(
    (torch.tensor([0]), torch.tensor([1])), torch.tensor(float("nan"))
)
INF_X = torch.ones(6, 3).index_put_(
    (torch.tensor([2]), torch.tensor([0])), torch.tensor(float("inf"))
)


@pytest.mark.parametrize(
    ("train", "test", "kwargs", "message"),
    [
        ([], [], {}, "no training tasks"),
        (blobs(2), blobs(3), {}, "2 training tasks but 3 test tasks"),
        (_bad(1, x=torch.ones(6, 4)), blobs(), {}, r"train task 1 has inputs of shape \(4,\)"),
        (blobs(), _bad(0, x=torch.ones(6, 2, 2)), {}, r"test task 0 has inputs of shape \(2, 2\)"),
        (_bad(0, x=torch.ones(6, 3, dtype=torch.int64)), blobs(), {}, "dtype torch.int64; pass fl"),
        (_bad(1, x=NAN_X), blobs(), {}, "train task 1 has 1 NaN and 0 inf values"),
        (blobs(), _bad(1, x=INF_X), {}, "test task 1 has 0 NaN and 1 inf values"),
        (_bad(0, y=torch.zeros(6, 1, dtype=torch.long)), blobs(), {}, r"y of shape \(6, 1\)"),
        (_bad(0, y=torch.zeros(6)), blobs(), {}, "y of dtype torch.float32; pass integer"),
        (_bad(0, y=torch.zeros(5, dtype=torch.long)), blobs(), {}, "6 inputs but 5 labels"),
        (_bad(1, x=torch.ones(0, 3), y=torch.zeros(0, dtype=torch.long)), blobs(), {}, "empty"),
        (
            _bad(0, y=torch.tensor([0, 1, 2, 3, 9, 1])),
            blobs(),
            {"n_classes": 4},
            "label 9, outside",
        ),
        (_bad(0, y=torch.tensor([0, -1, 0, 1, 0, 1])), blobs(), {}, "label -1, outside"),
        (blobs(), blobs(), {"n_classes": 0}, "n_classes is 0; pass a positive"),
        (blobs(), blobs(), {"task_identities": [0]}, "1 task identities for 2 tasks"),
        (blobs(), blobs(), {"task_identities": [0, -1]}, "task identity -1 is not"),
        ([np.ones((6, 3))] * 2, blobs(), {}, "train task 0 is ndarray; pass an"),
        ([(np.ones((6, 3)), np.zeros(6))] * 2, blobs(), {}, "x of type ndarray"),
    ],
)
def test_tensor_stream_rejects_bad_input_in_one_line(train, test, kwargs, message):
    with pytest.raises(StreamError, match=message) as caught:
        tensor_stream("mine", "class-incremental", train, test, **kwargs)
    assert str(caught.value).startswith("stream 'mine': ")
    assert "\n" not in str(caught.value)


def test_tensor_stream_rejects_an_unknown_scenario():
    with pytest.raises(StreamError, match="unknown scenario 'online'; choose one of"):
        tensor_stream("mine", "online", blobs(), blobs())


# --- reaching streams by name ----------------------------------------------------------------

USER_STREAM = textwrap.dedent(
    """
    import torch
    from streams import StreamSpec, TaskStream, tensor_stream

    def tiny(spec: StreamSpec) -> TaskStream:
        generator = torch.Generator().manual_seed(spec.seed)
        tasks = [
            (torch.randn(8, 2, generator=generator), torch.arange(8) % 2 + 2 * t)
            for t in range(spec.n_tasks or 2)
        ]
        return tensor_stream("tiny", "class-incremental", tasks, tasks)

    not_a_function = 3
    """
)


def test_a_stream_from_a_python_file(tmp_path):
    path = tmp_path / "my_streams.py"
    path.write_text(USER_STREAM)
    stream = make_stream(f"{path}:tiny", StreamSpec(n_tasks=3))
    assert (stream.name, stream.n_tasks, stream.n_classes) == ("tiny", 3, 6)
    with pytest.raises(UnknownStreamError, match="has no attribute 'missing'"):
        make_stream(f"{path}:missing")
    with pytest.raises(UnknownStreamError, match="does not exist"):
        make_stream(f"{tmp_path / 'nope.py'}:tiny")
    with pytest.raises(UnknownStreamError, match="is not callable"):
        make_stream(f"{path}:not_a_function")


def test_a_stream_from_a_package_module(tmp_path, monkeypatch):
    package = tmp_path / "thirdparty_streams_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "things.py").write_text(USER_STREAM)
    monkeypatch.syspath_prepend(str(tmp_path))
    stream = make_stream("thirdparty_streams_pkg.things:tiny")
    assert stream.n_tasks == 2
    with pytest.raises(UnknownStreamError, match="cannot import module 'no_such_pkg_xyz"):
        make_stream("no_such_pkg_xyz.mod:tiny")


def test_a_stream_from_an_entry_point(tmp_path, monkeypatch):
    (tmp_path / "entry_point_streams_mod.py").write_text(USER_STREAM)
    monkeypatch.syspath_prepend(str(tmp_path))
    point = importlib.metadata.EntryPoint(
        name="tiny-ep", value="entry_point_streams_mod:tiny", group="lifelong.streams"
    )

    def fake_entry_points(*, group: str):
        return [point] if group == "lifelong.streams" else []

    monkeypatch.setattr(streams.registry, "entry_points", fake_entry_points)
    assert "tiny-ep" in available_streams()
    assert make_stream("tiny-ep", StreamSpec(n_tasks=1)).n_tasks == 1


def test_an_unknown_name_lists_the_valid_ones():
    with pytest.raises(
        UnknownStreamError, match="unknown stream 'nope'; choose one of: "
    ) as caught:
        make_stream("nope")
    for name in CONTRACT_SPECS:
        assert name in str(caught.value)


def test_registering_a_name_twice_is_an_error(monkeypatch):
    monkeypatch.setattr(streams.registry, "_REGISTRY", dict(streams.registry._REGISTRY))

    @register_stream("twice-test")
    def first(spec: StreamSpec) -> TaskStream:
        """First."""
        return tensor_stream("twice-test", "class-incremental", blobs(), blobs())

    assert available_streams()["twice-test"] == "First."
    with pytest.raises(ValueError, match="'twice-test' is already registered"):
        register_stream("twice-test")(first)
    with pytest.raises(ValueError, match="'split-digits' is already registered"):
        register_stream("split-digits")(first)


def test_a_factory_must_return_a_task_stream(tmp_path):
    path = tmp_path / "wrong.py"
    path.write_text("def wrong(spec):\n    return 42\n")
    with pytest.raises(TypeError, match="returned int; a stream factory must return"):
        make_stream(f"{path}:wrong")
