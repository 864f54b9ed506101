"""Loaders of real data: MNIST IDX files, Omniglot, scikit-learn's digits, MNIST-1D and image
folders, read from the project's offline copies in ``<repo>/../shared/data``."""

import gzip
import random
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from streams import StreamError, StreamSpec, make_stream
from streams.data import (
    DATA_ROOT_ENV,
    find_omniglot,
    load_digits,
    load_image_folder,
    load_mnist,
    load_mnist1d,
    load_omniglot,
    read_idx,
    resolve_data_root,
    stratified_split,
)
from streams.data.mnist import HELD_OUT_FRACTION, HELD_OUT_SEED

MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
OMNIGLOT_ALPHABETS = ["Balinese", "Early_Aramaic", "Greek", "Korean", "Latin"]


def write_idx(path: Path, array: np.ndarray, *, compress: bool = True) -> Path:
    """Write a uint8 array as an IDX file (images if 3-D, labels if 1-D)."""
    magic = 2051 if array.ndim == 3 else 2049
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


def fake_mnist(folder: Path, split: str, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    write_idx(folder / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
    write_idx(folder / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10)


# --- MNIST -----------------------------------------------------------------------------------


def test_mnist_labels_and_class_counts_match_the_readme(shared_data):
    labels = read_idx(shared_data / "mnist" / "t10k-labels-idx1-ubyte.gz")
    images = read_idx(shared_data / "mnist" / "t10k-images-idx3-ubyte.gz")
    assert labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(labels).tolist() == MNIST_TEST_COUNTS
    assert images.shape == (10_000, 28, 28)
    assert images.dtype == np.uint8


def test_test_only_mnist_is_split_fixed_stratified_and_disjoint(shared_data):
    data = load_mnist(shared_data / "mnist")
    assert data.x_train.shape == (8000, 1, 28, 28)
    assert data.x_test.shape == (2000, 1, 28, 28)
    assert data.x_train.dtype == torch.float32
    assert float(data.x_train.min()) >= 0.0 and float(data.x_train.max()) <= 1.0
    assert data.n_classes == 10
    test_counts = torch.bincount(data.y_test, minlength=10).tolist()
    for held, total in zip(test_counts, MNIST_TEST_COUNTS, strict=True):
        assert abs(held - 0.2 * total) <= 1
    # The split is the fixed one, whatever else happens in the process.
    labels = read_idx(shared_data / "mnist" / "t10k-labels-idx1-ubyte.gz")
    train, test = stratified_split(labels, HELD_OUT_FRACTION, HELD_OUT_SEED)
    assert len(np.intersect1d(train, test)) == 0
    assert len(train) + len(test) == 10_000
    assert torch.equal(data.y_test, torch.from_numpy(labels[test].astype(np.int64)))
    again = load_mnist(shared_data)
    assert torch.equal(again.x_train, data.x_train)
    assert torch.equal(again.x_test, data.x_test)
    # Disjoint images: no held-out image appears in the training pool.
    pool = {bytes(row) for row in (data.x_train.flatten(1) * 255).round().byte().numpy()}
    held = [bytes(row) for row in (data.x_test.flatten(1) * 255).round().byte().numpy()]
    assert sum(row in pool for row in held) < 20  # MNIST holds a few exact duplicates


@pytest.mark.parametrize("layout", ["flat", "parent", "torchvision", "uncompressed"])
def test_mnist_layouts(layout, shared_data, tmp_path):
    source = shared_data / "mnist"
    names = ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    target = {
        "flat": tmp_path,
        "parent": tmp_path / "mnist",
        "torchvision": tmp_path / "MNIST" / "raw",
        "uncompressed": tmp_path,
    }[layout]
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        if layout == "uncompressed":
            (target / name[:-3]).write_bytes(gzip.decompress((source / name).read_bytes()))
        else:
            shutil.copy(source / name, target / name)
    data = load_mnist(tmp_path)
    reference = load_mnist(source)
    assert torch.equal(data.x_test, reference.x_test)
    assert torch.equal(data.y_train, reference.y_train)


def test_mnist_with_its_train_split_uses_train_for_training(tmp_path):
    fake_mnist(tmp_path / "MNIST" / "raw", "train", 60, seed=1)
    fake_mnist(tmp_path / "MNIST" / "raw", "t10k", 30, seed=2)
    data = load_mnist(tmp_path)
    assert data.x_train.shape == (60, 1, 28, 28)
    assert data.x_test.shape == (30, 1, 28, 28)
    images = read_idx(tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz")
    assert torch.equal(data.x_test[:, 0], torch.from_numpy(images / np.float32(255.0)))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00\x00\x08\x05" + bytes(20), "magic number 2053, expected 2051"),
        (gzip.compress(b"\x00\x00\x08\x02" + bytes(8)), "not an MNIST IDX file: magic number 2050"),
        (gzip.compress(np.arange(5000).astype(np.uint8).tobytes())[:40], "cannot read MNIST IDX"),
        (b"\x00\x00", "too short for a header"),
        (
            (2049).to_bytes(4, "big") + (10).to_bytes(4, "big") + bytes(9),
            r"has 17 bytes, its header \(10,\) says 18",
        ),
    ],
)
def test_malformed_idx_files_raise_stream_error(content, message, tmp_path):
    path = tmp_path / "bad-idx.gz"
    path.write_bytes(content)
    with pytest.raises(StreamError, match=message) as caught:
        read_idx(path)
    assert str(path) in str(caught.value)


def test_malformed_mnist_copies_are_named(tmp_path):
    fake_mnist(tmp_path, "t10k", 10, seed=0)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(9) % 10)
    with pytest.raises(StreamError, match="has 10 images but .* has 9 labels"):
        load_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(StreamError, match=r"but no t10k-labels-idx1-ubyte\[\.gz\] beside it"):
        load_mnist(tmp_path)


def test_missing_mnist_names_the_path_and_the_fix(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(StreamError) as caught:
        make_stream("rotated-mnist", StreamSpec(data_root=missing))
    assert str(caught.value) == (
        f"stream 'rotated-mnist': no MNIST IDX files under '{missing}' (looked for "
        "t10k-images-idx3-ubyte[.gz] in it, in MNIST/raw/ and in mnist/); pass --data-root "
        "pointing at them (e.g. ../shared/data/mnist) or --download"
    )


def test_download_asks_torchvision_only_when_files_are_missing(tmp_path, monkeypatch):
    calls = []

    class FakeMNIST:
        def __init__(self, root: str, train: bool, download: bool) -> None:
            calls.append((root, train, download))
            split = "train" if train else "t10k"
            fake_mnist(Path(root) / "MNIST" / "raw", split, 20, seed=int(train))

    monkeypatch.setattr("torchvision.datasets.MNIST", FakeMNIST)
    with pytest.raises(StreamError, match="no MNIST IDX files"):
        load_mnist(tmp_path)
    assert calls == []
    data = load_mnist(tmp_path, download=True)
    assert calls == [(str(tmp_path), True, True), (str(tmp_path), False, True)]
    assert (len(data.x_train), len(data.x_test)) == (20, 20)
    load_mnist(tmp_path, download=True)
    assert len(calls) == 2


def test_the_default_data_root(monkeypatch, tmp_path, shared_data):
    monkeypatch.delenv(DATA_ROOT_ENV, raising=False)
    assert resolve_data_root(None) == Path("data")
    assert resolve_data_root(tmp_path) == tmp_path
    monkeypatch.setenv(DATA_ROOT_ENV, str(shared_data))
    assert resolve_data_root(None) == shared_data
    assert make_stream("split-mnist", StreamSpec(n_tasks=1)).n_tasks == 1
    monkeypatch.delenv(DATA_ROOT_ENV)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StreamError, match="^stream 'split-mnist': no MNIST IDX files under 'data'"):
        make_stream("split-mnist")


# --- Omniglot --------------------------------------------------------------------------------


def test_omniglot_from_the_zip(shared_data):
    data = load_omniglot(shared_data / "omniglot" / "images_background_small1.zip")
    alphabets = sorted({name.split("/")[0] for name in data.class_names})
    assert alphabets == OMNIGLOT_ALPHABETS
    assert data.n_classes == 136
    assert torch.bincount(data.y_train).tolist() == [15] * 136
    assert torch.bincount(data.y_test).tolist() == [5] * 136
    assert data.x_train.shape == (2040, 1, 28, 28)
    assert float(data.x_train.min()) >= 0.0 and float(data.x_train.max()) <= 1.0
    assert float(data.x_train.mean()) < 0.3  # inverted: strokes 1 on a 0 background
    for label in range(0, 136, 17):
        train = data.x_train[data.y_train == label].flatten(1)
        test = data.x_test[data.y_test == label].flatten(1)
        assert not any(torch.equal(a, b) for a in train for b in test)


def test_omniglot_options(shared_data):
    plain = load_omniglot(shared_data, image_size=20, invert=False)
    assert plain.x_test.shape == (680, 1, 20, 20)
    assert float(plain.x_train.mean()) > 0.7  # the files' own black strokes on white
    inverted = load_omniglot(shared_data, image_size=20)
    assert torch.allclose(inverted.x_train, 1.0 - plain.x_train)
    with pytest.raises(StreamError, match="image_size is 0"):
        load_omniglot(shared_data, image_size=0)


def extract(zip_path: Path, target: Path, alphabets: list[str], strip_top: bool = True) -> None:
    with zipfile.ZipFile(zip_path) as archive:
        for name in archive.namelist():
            parts = Path(name).parts
            if name.endswith(".png") and parts[1] in alphabets:
                destination = target.joinpath(*(parts[1:] if strip_top else parts))
                destination.parent.mkdir(parents=True, exist_ok=True)
                destination.write_bytes(archive.read(name))


@pytest.mark.parametrize("layout", ["torchvision", "alphabets", "extracted-top", "zip-folder"])
def test_omniglot_layouts(layout, shared_data, tmp_path):
    zip_path = shared_data / "omniglot" / "images_background_small1.zip"
    chosen = ["Greek", "Latin"]
    if layout == "torchvision":
        extract(zip_path, tmp_path / "omniglot-py" / "images_background", chosen)
    elif layout == "alphabets":
        extract(zip_path, tmp_path, chosen)
    elif layout == "extracted-top":
        extract(zip_path, tmp_path, chosen, strip_top=False)
    else:
        shutil.copy(zip_path, tmp_path / zip_path.name)
    data = load_omniglot(tmp_path)
    alphabets = sorted({name.split("/")[0] for name in data.class_names})
    assert alphabets == (OMNIGLOT_ALPHABETS if layout == "zip-folder" else chosen)
    reference = load_omniglot(zip_path)
    first = reference.class_names.index(data.class_names[0])
    assert torch.equal(data.x_test[:5], reference.x_test[first * 5 : first * 5 + 5])
    stream = make_stream("split-omniglot", StreamSpec(data_root=tmp_path))
    assert stream.n_tasks == len(alphabets)


def test_omniglot_download_asks_torchvision_only_when_missing(tmp_path, monkeypatch, shared_data):
    calls = []

    class FakeOmniglot:
        def __init__(self, root: str, background: bool, download: bool) -> None:
            calls.append((root, background, download))
            zip_path = shared_data / "omniglot" / "images_background_small1.zip"
            extract(zip_path, Path(root) / "omniglot-py" / "images_background", ["Greek"])

    monkeypatch.setattr("torchvision.datasets.Omniglot", FakeOmniglot)
    with pytest.raises(StreamError, match="no Omniglot under"):
        load_omniglot(tmp_path)
    assert calls == []
    spec = StreamSpec(data_root=tmp_path, download=True)
    assert make_stream("split-omniglot", spec).n_tasks == 1
    assert calls == [(str(tmp_path), True, True)]


def test_missing_or_ambiguous_omniglot(tmp_path, shared_data):
    with pytest.raises(StreamError) as caught:
        make_stream("split-omniglot", StreamSpec(data_root=tmp_path))
    message = str(caught.value)
    assert message.startswith(f"stream 'split-omniglot': no Omniglot under '{tmp_path}'")
    assert "--data-root" in message and "--download" in message
    zip_path = shared_data / "omniglot" / "images_background_small1.zip"
    shutil.copy(zip_path, tmp_path / "a.zip")
    shutil.copy(zip_path, tmp_path / "b.zip")
    with pytest.raises(StreamError, match=r"several zip files \(a.zip, b.zip\); pass the one"):
        find_omniglot(tmp_path)


# --- bundled data ----------------------------------------------------------------------------


def test_digits_are_split_fixed_and_stratified():
    data = load_digits()
    assert data.x_train.shape == (1438, 1, 8, 8)
    assert data.x_test.shape == (359, 1, 8, 8)
    assert float(data.x_train.min()) == 0.0 and float(data.x_train.max()) == 1.0
    assert torch.bincount(data.y_test).min() >= 35
    again = load_digits()
    assert torch.equal(again.x_test, data.x_test)
    data.x_train.zero_()  # callers may change what they get without harming the cache
    assert float(load_digits().x_train.max()) == 1.0


def test_mnist1d_is_generated_locally_without_touching_global_state(monkeypatch, tmp_path):
    import mnist1d.data

    from streams.data import bundled

    def no_network(*args, **kwargs):
        raise AssertionError("mnist1d tried to download")

    monkeypatch.setattr(mnist1d.data.requests, "get", no_network)
    monkeypatch.chdir(tmp_path)
    bundled._mnist1d_arrays.cache_clear()
    numpy_state = np.random.get_state()[1].copy()
    python_state = random.getstate()
    data = load_mnist1d()
    assert np.array_equal(np.random.get_state()[1], numpy_state)
    assert random.getstate() == python_state
    assert list(tmp_path.iterdir()) == []
    assert data.x_train.shape == (4000, 1, 40)
    assert data.x_test.shape == (1000, 1, 40)
    assert data.x_train.dtype == torch.float32
    assert sorted(set(data.y_train.tolist())) == list(range(10))
    bundled._mnist1d_arrays.cache_clear()
    assert torch.equal(load_mnist1d().x_test, data.x_test)


# --- image folders ---------------------------------------------------------------------------


def make_folder(root: Path, counts: dict[str, int], mode: str = "L") -> Path:
    for label, (name, count) in enumerate(counts.items()):
        (root / name).mkdir(parents=True)
        for i in range(count):
            size = (10 + i, 8) if mode == "L" else (8, 8)
            Image.new(mode, size, color=(label * 40) if mode == "L" else (label * 40, 0, 255)).save(
                root / name / f"{i:03d}.png"
            )
    return root


def test_image_folder_reads_sorted_classes_and_holds_out_the_last_images(tmp_path):
    root = make_folder(tmp_path / "imgs", {"zebra": 10, "apple": 5, "mango": 3})
    (root / ".hidden").mkdir()
    (root / "notes.txt").write_text("not a class")
    (root / "apple" / "readme.txt").write_text("not an image")
    data = load_image_folder(root, image_size=6)
    assert data.class_names == ("apple", "mango", "zebra")
    assert data.x_train.shape == (8 + 4 + 2, 1, 6, 6)
    assert torch.bincount(data.y_test).tolist() == [1, 1, 2]
    # Written in the order zebra, apple, mango with grey levels 0, 40, 80; read sorted.
    assert torch.allclose(data.x_test[data.y_test == 0], torch.tensor(40 / 255))
    rgb = load_image_folder(make_folder(tmp_path / "rgb", {"a": 2, "b": 2}, "RGB"), channels=3)
    assert rgb.x_train.shape == (2, 3, 28, 28)
    assert torch.allclose(rgb.x_train[0, 2], torch.tensor(1.0))


def test_image_folder_errors(tmp_path):
    with pytest.raises(StreamError, match="does not exist; pass --data-root"):
        load_image_folder(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StreamError, match="no class folders with images in"):
        load_image_folder(tmp_path / "empty")
    lonely = make_folder(tmp_path / "lonely", {"a": 1, "b": 3})
    with pytest.raises(StreamError, match="class 'a' in .* has 1 image; each class needs"):
        load_image_folder(lonely)
    broken = make_folder(tmp_path / "broken", {"a": 2, "b": 2})
    (broken / "b" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(StreamError, match="cannot decode image .*bad.png"):
        load_image_folder(broken)


# --- the stratified split --------------------------------------------------------------------


def test_stratified_split_sizes_cover_and_determinism():
    labels = np.repeat(np.arange(3), [10, 7, 3])
    train, test = stratified_split(labels, 0.3, seed=1)
    assert len(test) == 6
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(20))
    assert np.bincount(labels[test], minlength=3).tolist() == [3, 2, 1]
    again = stratified_split(labels, 0.3, seed=1)
    assert np.array_equal(again[1], test)
    assert not np.array_equal(stratified_split(labels, 0.3, seed=2)[1], test)
    with pytest.raises(StreamError, match="test_fraction is 1.5"):
        stratified_split(labels, 1.5, seed=0)
