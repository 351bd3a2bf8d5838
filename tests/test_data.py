"""Tests for clbench.data: tiny fixtures in the real on-disk layouts, plus real MNIST if present."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import random
import struct
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clbench import data
from clbench.errors import ClbenchError, DataMissing

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED = next((p for p in (REPO.parent / "shared" / "data", Path("/work/shared/data"))
               if (p / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").is_file()), None)
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Fresh in-process cache, a private cache dir and no $CLBENCH_DATA for every test."""
    data.clear_cache()
    monkeypatch.setenv("CLBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CLBENCH_DATA", raising=False)
    yield
    data.clear_cache()


def snapshot(root: Path) -> dict[str, tuple[int, str, int]]:
    """Every file and folder under ``root`` with size, sha256 and mtime."""
    found = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        found[str(path.relative_to(root))] = (st.st_size, digest, st.st_mtime_ns)
    return found


def make_readonly(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)


# ------------------------------------------------------------------------------------- idx


def idx_payload(array: np.ndarray) -> bytes:
    return (bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
            + array.astype(np.uint8).tobytes())


def write_idx_set(folder: Path, seed: int = 0, gz: bool = True, mtime: int = 0,
                  tweak: bool = False) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Write the four idx files (20 train, 10 test); returns arrays and payload md5s."""
    rng = np.random.default_rng(seed)
    arrays = {
        STEMS[0]: rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        STEMS[1]: (np.arange(20) % 10).astype(np.uint8),
        STEMS[2]: rng.integers(0, 256, (10, 28, 28), dtype=np.uint8),
        STEMS[3]: (np.arange(10)[::-1] % 10).astype(np.uint8),
    }
    if tweak:
        arrays[STEMS[2]][3, 5, 7] ^= 1
    folder.mkdir(parents=True, exist_ok=True)
    md5s = {}
    for stem, array in arrays.items():
        payload = idx_payload(array)
        md5s[stem] = hashlib.md5(payload).hexdigest()
        if gz:
            with open(folder / f"{stem}.gz", "wb") as raw, \
                    gzip.GzipFile(filename=stem, mode="wb", fileobj=raw, mtime=mtime) as out:
                out.write(payload)
        else:
            (folder / stem).write_bytes(payload)
    return arrays, md5s


def test_mnist_fixture_round_trip(tmp_path, monkeypatch):
    arrays, md5s = write_idx_set(tmp_path / "MNIST" / "raw")
    monkeypatch.setitem(data.KNOWN_MD5, "mnist", md5s)
    source = data.load_source("mnist", tmp_path)
    assert source.info is data.SOURCES["mnist"]
    for split, images, labels in ((source.train, *STEMS[:2]), (source.test, *STEMS[2:])):
        assert split.x.dtype == torch.uint8
        assert split.y.dtype == torch.int64
        assert split.x.shape == (len(arrays[labels]), 1, 28, 28)
        assert split.x.is_contiguous()
        assert np.array_equal(split.x[:, 0].numpy(), arrays[images])
        assert split.y.tolist() == arrays[labels].tolist()
    assert source.identity["name"] == "mnist"
    assert (source.identity["train"], source.identity["test"]) == (20, 10)
    assert source.identity["note"] == ""
    assert data.load_source("mnist", str(tmp_path)) is source  # cached per resolved root
    assert data.source_identity("mnist", tmp_path) == source.identity


def test_idx_checksum_follows_payload_not_gzip_bytes(tmp_path, monkeypatch):
    _, md5s = write_idx_set(tmp_path / "a" / "MNIST" / "raw", mtime=0)
    write_idx_set(tmp_path / "b" / "MNIST" / "raw", mtime=123456)  # same data, other gz bytes
    monkeypatch.setitem(data.KNOWN_MD5, "mnist", md5s)
    first = data.source_identity("mnist", tmp_path / "a")
    assert data.source_identity("mnist", tmp_path / "b") == first
    _, tweaked = write_idx_set(tmp_path / "c" / "MNIST" / "raw", tweak=True)
    monkeypatch.setitem(data.KNOWN_MD5, "mnist", tweaked)
    assert data.source_identity("mnist", tmp_path / "c")["checksum"] != first["checksum"]


def test_idx_md5_mismatch_names_the_file(tmp_path, monkeypatch):
    write_idx_set(tmp_path / "MNIST" / "raw", tweak=True)
    _, good = write_idx_set(tmp_path / "elsewhere")
    monkeypatch.setitem(data.KNOWN_MD5, "mnist", good)
    with pytest.raises(ClbenchError, match=r"t10k-images-idx3-ubyte\.gz .*re-download"):
        data.load_source("mnist", tmp_path)


def test_idx_truncated_gzip_is_reported(tmp_path, monkeypatch):
    folder = tmp_path / "MNIST" / "raw"
    _, md5s = write_idx_set(folder)
    monkeypatch.setitem(data.KNOWN_MD5, "mnist", md5s)
    path = folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ClbenchError) as info:
        data.load_source("mnist", tmp_path)
    message = str(info.value)
    assert str(path) in message
    assert "re-download" in message
    assert "\n" not in message


def test_idx_gz_md5_alone_is_accepted(tmp_path, monkeypatch):
    folder = tmp_path / "MNIST" / "raw"
    write_idx_set(folder)
    table = {f"{s}.gz": hashlib.md5((folder / f"{s}.gz").read_bytes()).hexdigest() for s in STEMS}
    monkeypatch.setitem(data.KNOWN_MD5, "mnist", table)
    assert data.load_source("mnist", tmp_path).identity["train"] == 20


def test_fashion_uncompressed_in_debian_folder(tmp_path, monkeypatch):
    arrays, md5s = write_idx_set(tmp_path / "fashion-mnist", gz=False)
    monkeypatch.setitem(data.KNOWN_MD5, "fashion-mnist", md5s)
    source = data.load_source("fashion-mnist", tmp_path)
    assert np.array_equal(source.test.x[:, 0].numpy(), arrays[STEMS[2]])
    assert source.info.mean == (0.2860,)


@pytest.mark.skipif(SHARED is None, reason="real MNIST not present")
def test_real_mnist():
    assert SHARED is not None
    before = snapshot(SHARED)
    source = data.load_source("mnist", SHARED)
    assert source.train.x.shape == (60000, 1, 28, 28)
    assert source.test.x.shape == (10000, 1, 28, 28)
    assert torch.bincount(source.train.y).tolist() == [5923, 6742, 5958, 6131, 5842,
                                                       5421, 5918, 6265, 5851, 5949]
    assert torch.bincount(source.test.y).tolist() == [980, 1135, 1032, 1010, 982,
                                                      892, 958, 1028, 974, 1009]
    assert source.identity == {"name": "mnist", "train": 60000, "test": 10000,
                               "checksum": "edb1f5b965ea639f9bc6f590a5154668", "note": ""}
    mean = source.train.x.float().mean().item() / 255
    assert abs(mean - data.SOURCES["mnist"].mean[0]) < 1e-3
    assert snapshot(SHARED) == before


@pytest.mark.skipif(not (DEBIAN_FASHION / "train-images-idx3-ubyte.gz").is_file(),
                    reason="Debian's dataset-fashion-mnist not installed")
def test_real_fashion_mnist_from_debian(tmp_path):
    # Debian stripped the file names from the gzip headers: gz md5s differ, payloads match
    (tmp_path / "fashion-mnist").symlink_to(DEBIAN_FASHION)
    source = data.load_source("fashion-mnist", tmp_path)
    assert torch.bincount(source.train.y).tolist() == [6000] * 10
    assert torch.bincount(source.test.y).tolist() == [1000] * 10
    assert source.identity["checksum"] == "dc1e3839374e50fcb9fcd364374d6fad"


# ----------------------------------------------------------------------------------- cifar


def write_cifar(root: Path, name: str, seed: int = 0, tweak: bool = False) -> dict:
    """CIFAR pickles with 4 images per train file and 3 test images; returns arrays, md5s."""
    rng = np.random.default_rng(seed)
    folder, train_files, test_files, key = data._CIFAR_FILES[name]
    classes = data.SOURCES[name].classes
    (root / folder).mkdir(parents=True, exist_ok=True)
    out: dict = {"md5": {}, "train": [], "test": []}
    for split, files, n in (("train", train_files, 4), ("test", test_files, 3)):
        for file in files:
            x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
            if tweak and file == files[-1]:
                x[0, 0] ^= 1
            y = rng.integers(0, classes, n).tolist()
            entry = {"data": x, key: y, "batch_label": file}
            if name == "cifar100":
                entry["coarse_labels"] = [label // 5 for label in y]
            raw = pickle.dumps(entry, protocol=2)
            (root / folder / file).write_bytes(raw)
            out["md5"][file] = hashlib.md5(raw).hexdigest()
            out[split].append((x, y))
    return out


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_round_trip_and_checksum(tmp_path, monkeypatch, name):
    made = write_cifar(tmp_path / "a", name)
    monkeypatch.setitem(data.KNOWN_MD5, name, made["md5"])
    source = data.load_source(name, tmp_path / "a")
    for split, parts in ((source.train, made["train"]), (source.test, made["test"])):
        x = np.concatenate([p[0] for p in parts]).reshape(-1, 3, 32, 32)
        assert split.x.dtype == torch.uint8
        assert split.x.shape == x.shape
        assert np.array_equal(split.x.numpy(), x)
        assert split.y.dtype == torch.int64
        assert split.y.tolist() == [label for p in parts for label in p[1]]
    n_train = 20 if name == "cifar10" else 4
    assert (source.identity["train"], source.identity["test"]) == (n_train, 3)
    tweaked = write_cifar(tmp_path / "b", name, tweak=True)
    monkeypatch.setitem(data.KNOWN_MD5, name, tweaked["md5"])
    assert data.source_identity(name, tmp_path / "b")["checksum"] != source.identity["checksum"]


def test_cifar_bad_files(tmp_path, monkeypatch):
    made = write_cifar(tmp_path, "cifar10")
    monkeypatch.setitem(data.KNOWN_MD5, "cifar10", made["md5"])
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(b"not a pickle")
    with pytest.raises(ClbenchError, match=r"data_batch_3 does not match the known md5"):
        data.load_source("cifar10", tmp_path)
    monkeypatch.setitem(data.KNOWN_MD5["cifar10"], "data_batch_3", hashlib.md5(b"not a pickle")
                        .hexdigest())
    with pytest.raises(ClbenchError, match=r"data_batch_3 is unreadable .*re-download"):
        data.load_source("cifar10", tmp_path)


# ----------------------------------------------------------------------------- cifar10-jpg


def colour(label: int, k: int) -> tuple[int, int, int]:
    return (20 * label + 10, 200 - 15 * label, 40 + 60 * k)


def write_jpg_tarball(root: Path, tweak: bool = False,
                      classes: tuple[str, ...] = data.CIFAR10_CLASSES) -> Path:
    """train/<class>/000k.jpg (2 per class) and test/<class>/0000.jpg, in shuffled tar order."""
    members = []
    for split, per_class in (("train", 2), ("test", 1)):
        for label, cls in enumerate(classes):
            for k in range(per_class):
                fill = colour(label, k)
                if tweak and (split, label, k) == ("test", 9, 0):
                    fill = (fill[0], fill[1], fill[2] + 50)
                buffer = io.BytesIO()
                Image.new("RGB", (32, 32), fill).save(buffer, "JPEG", quality=95)
                members.append((f"{split}/{cls}/{k:04d}.jpg", buffer.getvalue()))
    random.Random(0).shuffle(members)
    path = root / data.CIFAR10_JPG_TARBALL
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for folder in ("train", "test"):
            info = tarfile.TarInfo(folder)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        for member, payload in members:
            info = tarfile.TarInfo(member)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


def test_cifar10_jpg_decode_cache_and_identity(tmp_path, monkeypatch):
    tarball = write_jpg_tarball(tmp_path / "a")
    source = data.load_source("cifar10-jpg", tmp_path / "a")
    assert source.info.lossy
    assert source.train.x.shape == (20, 3, 32, 32)
    assert source.train.x.dtype == torch.uint8
    assert source.test.x.shape == (10, 3, 32, 32)
    assert source.train.y.tolist() == [c for c in range(10) for _ in range(2)]
    assert source.test.y.tolist() == list(range(10))
    for i, (label, k) in enumerate((c, k) for c in range(10) for k in range(2)):
        mean = source.train.x[i].float().mean((1, 2))
        assert torch.allclose(mean, torch.tensor(colour(label, k), dtype=torch.float), atol=4)
    identity = source.identity
    assert (identity["train"], identity["test"]) == (20, 10)
    assert identity["checksum"] == hashlib.sha256(tarball.read_bytes()).hexdigest()
    assert "lossy JPEG q75" in identity["note"]
    cached = list((tmp_path / "cache").glob("cifar10-jpg-*.npz"))
    assert [p.name for p in cached] == [f"cifar10-jpg-{identity['checksum']}.npz"]

    def no_decode(path):
        raise AssertionError("the cache should have been used")

    data.clear_cache()
    monkeypatch.setattr(data, "_decode_cifar10_jpg", no_decode)
    again = data.load_source("cifar10-jpg", tmp_path / "a")
    assert torch.equal(again.train.x, source.train.x)
    assert torch.equal(again.test.y, source.test.y)
    monkeypatch.undo()
    monkeypatch.setenv("CLBENCH_CACHE", str(tmp_path / "cache"))
    write_jpg_tarball(tmp_path / "b", tweak=True)
    assert data.source_identity("cifar10-jpg", tmp_path / "b")["checksum"] != identity["checksum"]


def test_cifar10_jpg_rejects_unknown_class_folder(tmp_path):
    write_jpg_tarball(tmp_path, classes=("plane", *data.CIFAR10_CLASSES[1:]))
    with pytest.raises(ClbenchError, match="'plane' is not a CIFAR-10 class"):
        data.load_source("cifar10-jpg", tmp_path)


# -------------------------------------------------------------------------------- imagenet


def write_imagenet(root: Path) -> None:
    sizes = [(40, 30), (30, 50), (64, 64)]
    for split, per_class in (("train", 3), ("val", 2)):
        for label, wnid in enumerate(("n01440764", "n01443537")):
            folder = root / "imagenet" / split / wnid
            folder.mkdir(parents=True)
            for k in range(per_class):
                fill = (200 * label + 20, 100, 30 * k)
                Image.new("RGB", sizes[k], fill).save(folder / f"{wnid}_{k}.JPEG", quality=95)
            (folder / "notes.txt").write_text("not an image")


def test_imagenet_folder(tmp_path):
    write_imagenet(tmp_path)
    source = data.load_source("imagenet", tmp_path)
    assert source.info.classes == 2
    assert not source.info.in_memory
    assert data.SOURCES["imagenet"].classes == 1000
    assert isinstance(source.train, data.FileSplit)
    assert source.identity["note"] == "2 classes found (1000 expected)"
    assert (source.identity["train"], source.identity["test"]) == (6, 4)
    assert source.train.y.tolist() == [0, 0, 0, 1, 1, 1]
    assert source.test.paths[2].endswith("val/n01443537/n01443537_0.JPEG")
    split = pickle.loads(pickle.dumps(source.train))  # goes to DataLoader workers
    batch = split.read(torch.tensor([0, 1, 5]), size=16)
    assert batch.shape == (3, 3, 16, 16)
    assert batch.dtype == torch.uint8
    assert torch.allclose(batch[2].float().mean((1, 2)), torch.tensor([220.0, 100, 60]), atol=4)
    assert split.read(torch.tensor([4])).shape == (1, 3, 224, 224)
    first = source.identity["checksum"]
    data.clear_cache()
    assert data.source_identity("imagenet", tmp_path)["checksum"] == first
    with open(tmp_path / "imagenet" / "val" / "n01440764" / "n01440764_1.JPEG", "ab") as f:
        f.write(b"\0")
    data.clear_cache()
    assert data.source_identity("imagenet", tmp_path)["checksum"] != first


def test_filesplit_read_resizes_to_256_then_centre_crops(tmp_path):
    # 224x224, a 16-pixel red frame around blue: shorter side 224 -> 256, then the 224 crop
    # drops 16 resized pixels (14 original ones) per side, so only ~2 pixels of red remain
    image = Image.new("RGB", (224, 224), (255, 0, 0))
    image.paste((0, 0, 255), (16, 16, 208, 208))
    image.save(tmp_path / "frame.png")
    split = data.FileSplit(paths=[str(tmp_path / "frame.png")], y=torch.tensor([0]))
    out = split.read(torch.tensor([0]))[0]
    assert out.shape == (3, 224, 224)
    red, blue = out[0].int(), out[2].int()
    assert red[112, 0] > 200
    assert blue[112, 0] < 50
    assert red[112, 6] < 50  # blue from pixel 6 on, on every side
    assert blue[112, 6] > 200
    assert red[6, 112] < 50
    assert red[217, 112] < 50


def test_imagenet_val_class_missing_from_train(tmp_path):
    write_imagenet(tmp_path)
    (tmp_path / "imagenet" / "val" / "n99999999").mkdir()
    with pytest.raises(ClbenchError, match="n99999999"):
        data.load_source("imagenet", tmp_path)


# ------------------------------------------------------------------- read-only, missing data


def test_read_only_root_is_left_byte_identical(tmp_path, monkeypatch):
    root = tmp_path / "ro"
    _, md5s = write_idx_set(root / "MNIST" / "raw")
    made = write_cifar(root, "cifar10")
    write_jpg_tarball(root)
    write_imagenet(root)
    monkeypatch.setitem(data.KNOWN_MD5, "mnist", md5s)
    monkeypatch.setitem(data.KNOWN_MD5, "cifar10", made["md5"])
    make_readonly(root)
    before = snapshot(root)
    try:
        for name in ("mnist", "cifar10", "cifar10-jpg", "imagenet"):
            assert data.load_source(name, root, download=True).identity["train"] > 0
        assert snapshot(root) == before
    finally:
        for path in [root, *root.rglob("*")]:
            path.chmod(0o755)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10", "cifar100"])
def test_missing_data_message(tmp_path, name):
    root = tmp_path / "empty"
    root.mkdir()
    with pytest.raises(DataMissing) as info:
        data.load_source(name, root)
    message = str(info.value)
    assert "\n" not in message
    assert f"'{name}'" in message
    assert str(root) in message
    for needle in ("--data-root", "--download", "mnist-5k"):
        assert needle in message
    assert os.listdir(root) == []
    with pytest.raises(DataMissing):
        data.load_source(name, tmp_path / "absent")
    assert not (tmp_path / "absent").exists()


def test_missing_message_names_the_missing_file(tmp_path, monkeypatch):
    folder = tmp_path / "MNIST" / "raw"
    write_idx_set(folder)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataMissing, match=r"expected MNIST/raw/t10k-labels-idx1-ubyte\.gz\)"):
        data.load_source("mnist", tmp_path)


@pytest.mark.parametrize("name", ["cifar10-jpg", "imagenet"])
def test_not_downloadable(tmp_path, name):
    with pytest.raises(DataMissing, match=r"cannot be downloaded .*mnist-5k"):
        data.load_source(name, tmp_path)
    with pytest.raises(ClbenchError, match="cannot be downloaded"):
        data.load_source(name, tmp_path, download=True)
    assert os.listdir(tmp_path) == []


def test_download_goes_through_torchvision_only_when_missing(tmp_path, monkeypatch):
    import torchvision

    calls = []
    table = {}

    class FakeMNIST:
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            table.update(write_idx_set(Path(root) / "MNIST" / "raw")[1])

    monkeypatch.setattr(torchvision.datasets, "MNIST", FakeMNIST)
    monkeypatch.setitem(data.KNOWN_MD5, "mnist", table)
    root = tmp_path / "new"
    assert data.load_source("mnist", root, download=True).identity["test"] == 10
    assert calls == [(str(root), True, True), (str(root), False, True)]
    data.clear_cache()
    data.load_source("mnist", root, download=True)
    assert len(calls) == 2


def test_unknown_name(tmp_path):
    with pytest.raises(ClbenchError, match=r"unknown dataset 'svhn': .*mnist-5k"):
        data.load_source("svhn", tmp_path)


# -------------------------------------------------------------------------------- embedded


def test_mnist_5k():
    source = data.load_source("mnist-5k")
    assert source.train.x.shape == (4000, 1, 28, 28)
    assert source.test.x.shape == (1000, 1, 28, 28)
    assert source.train.x.dtype == torch.uint8
    assert source.train.y.dtype == torch.int64
    assert torch.bincount(source.train.y).tolist() == [400] * 10
    assert torch.bincount(source.test.y).tolist() == [100] * 10
    path = data._mnist_5k_path()
    with gzip.open(path, "rt") as handle:
        first = [int(v) for v in handle.readline().split(",")]
    assert source.train.x[0].flatten().tolist() == first[:784]
    assert source.train.y[0].item() == first[784]
    assert source.identity["checksum"] == hashlib.md5(path.read_bytes()).hexdigest()
    assert (source.identity["train"], source.identity["test"]) == (4000, 1000)
    data.clear_cache()
    again = data.load_source("mnist-5k", "/nonexistent/root/is/ignored")
    assert again is not source
    assert torch.equal(again.train.x, source.train.x)
    assert torch.equal(again.test.y, source.test.y)
    assert again.identity == source.identity


def test_synthetic_is_deterministic_and_learnable():
    source = data.load_source("synthetic")
    assert source.train.x.shape == (600, 1, 28, 28)
    assert source.test.x.shape == (200, 1, 28, 28)
    assert torch.bincount(source.train.y).tolist() == [60] * 10
    data.clear_cache()
    again = data.load_source("synthetic")
    assert torch.equal(again.train.x, source.train.x)
    assert torch.equal(again.test.x, source.test.x)
    assert again.identity == source.identity
    expected = hashlib.sha256()
    for split in (source.train, source.test):
        expected.update(split.x.numpy().tobytes())
        expected.update(split.y.numpy().tobytes())
    assert source.identity["checksum"] == expected.hexdigest()
    x = source.train.x.float().flatten(1)
    means = torch.stack([x[source.train.y == c].mean(0) for c in range(10)])
    predicted = torch.cdist(source.test.x.float().flatten(1), means).argmin(1)
    assert (predicted == source.test.y).float().mean().item() > 0.9
    info = data.SOURCES["synthetic"]
    assert abs(x.mean().item() / 255 - info.mean[0]) < 0.01
    assert abs(x.std().item() / 255 - info.std[0]) < 0.01


# ----------------------------------------------------------------------------- info, paths


def test_sources_readable_without_torch():
    code = ("import sys; from clbench import data; "
            "assert data.SOURCES['cifar100'].classes == 100; "
            "assert 'torch' not in sys.modules and 'numpy' not in sys.modules")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=REPO)


def test_source_infos():
    assert set(data.SOURCES) == {"mnist", "fashion-mnist", "cifar10", "cifar10-jpg", "cifar100",
                                 "imagenet", "mnist-5k", "synthetic"}
    for name, info in data.SOURCES.items():
        assert info.name == name
        assert len(info.mean) == len(info.std) == info.input_shape[0]
        assert info.in_memory == (name != "imagenet")
        assert info.embedded == (name in ("mnist-5k", "synthetic"))
        assert info.lossy == (name == "cifar10-jpg")


def test_resolve_root_and_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("CLBENCH_CACHE")
    assert data.resolve_root(None) == tmp_path / "xdg" / "clbench" / "data"
    assert not (tmp_path / "xdg" / "clbench" / "data").exists()
    assert data.cache_dir() == tmp_path / "xdg" / "clbench" / "cache"
    assert data.cache_dir().is_dir()
    monkeypatch.setenv("CLBENCH_DATA", str(tmp_path / "env"))
    assert data.resolve_root(None) == tmp_path / "env"
    assert data.resolve_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.setenv("CLBENCH_CACHE", str(tmp_path / "c"))
    assert data.cache_dir() == tmp_path / "c"
    assert (tmp_path / "c").is_dir()
