"""CIFAR-10 (Krizhevsky, 2009): 60,000 32x32 colour images of 10 classes, 6,000 per class.

Found, in order: extracted in the torchvision layout under the data root
(``<root>/cifar-10-batches-py/``), as the archive ``<root>/cifar-10-python.tar.gz`` placed there by
hand, or downloaded from the dataset's home page. The archive is verified (SHA-256 and MD5) before
anything is extracted; every batch file is verified (torchvision's MD5s) before it is unpickled,
because unpickling an untrusted file can run code.

The batches are Python pickles of ``{"data": uint8 (10000, 3072), "labels": [int] * 10000}``; each
row holds the red, then green, then blue 32x32 plane in row-major order.

Taught in: book/02_cnn (the CIFAR-10 speedrun of the full profile).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import torch

from companion.data.archives import md5_of
from companion.data.download import DownloadError, download
from companion.data.loaders import ArrayDataset

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
ARCHIVE_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"  # the one torchvision checks
FOLDER_NAME = "cifar-10-batches-py"  # what the archive extracts to, and torchvision's layout
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# MD5 of each batch file, as torchvision's CIFAR10 checks them.
FILES = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
SPLIT_FILES = {"train": ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"),
               "test": ("test_batch",)}


def batches_dir(root: Path) -> Path:
    """The torchvision layout: ``<root>/cifar-10-batches-py``."""
    return Path(root) / FOLDER_NAME


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def locate(root: Path, files: dict[str, str] | None = None) -> Path | None:
    """The folder holding every batch file, or None."""
    folder = batches_dir(root)
    names = FILES if files is None else files
    return folder if all((folder / name).is_file() for name in names) else None


def find_offline(root: Path) -> str | None:
    """Where CIFAR-10 is available without a download (the folder, else the archive), or None."""
    folder = locate(root)
    if folder is not None:
        return str(folder)
    archive = Path(root) / ARCHIVE_NAME
    return str(archive) if archive.is_file() else None


def verify_archive(path: Path, sha256: str = ARCHIVE_SHA256, md5: str = ARCHIVE_MD5) -> None:
    """Raise ``ValueError`` unless ``path`` has the published SHA-256 and MD5."""
    actual_sha, actual_md5 = _sha256_of(path), md5_of(path)
    if actual_sha != sha256 or actual_md5 != md5:
        raise ValueError(f"{path} is not the published CIFAR-10 archive (sha256 {actual_sha}, expected {sha256}; "
                         f"md5 {actual_md5}, expected {md5}); delete it and fetch it again from {URL}.")


def extract(archive: Path, root: Path, files: dict[str, str] | None = None) -> Path:
    """Extract the batch files of a verified archive into ``<root>/cifar-10-batches-py``.

    Only regular files named ``cifar-10-batches-py/<batch>`` are read, and they are written to paths
    built from our own names, never from the archive's, so a crafted archive cannot write outside
    the folder (no path traversal, no links). Files land in a temporary folder that is renamed into
    place only once all of them are there.

    Returns:
        The extracted folder.
    """
    names = FILES if files is None else files
    target = batches_dir(root)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{FOLDER_NAME}.", suffix=".part"))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                parts = member.name.removeprefix("./").split("/")
                if len(parts) != 2 or parts[0] != FOLDER_NAME or parts[1] not in names:
                    continue  # readme.html, batches.meta and anything unexpected are skipped
                if not member.isfile():
                    raise ValueError(f"{archive}: {member.name} is not a regular file; the archive is not "
                                     f"the published CIFAR-10 one. Delete it and fetch it again from {URL}.")
                source = tar.extractfile(member)
                assert source is not None  # regular files always have content
                with source, open(staging / parts[1], "wb") as handle:
                    shutil.copyfileobj(source, handle)
        missing = sorted(name for name in names if not (staging / name).is_file())
        if missing:
            raise ValueError(f"{archive} lacks {', '.join(missing)}; it is not the published CIFAR-10 archive. "
                             f"Delete it and fetch it again from {URL}.")
        os.chmod(staging, 0o755)  # mkdtemp makes it private; the data folder is not secret
        if target.exists():  # an incomplete earlier copy: replace it with the verified one
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def fetch(root: Path, url: str = URL, sha256: str = ARCHIVE_SHA256, md5: str = ARCHIVE_MD5) -> Path:
    """Download the archive (verified) to ``<root>/cifar-10-python.tar.gz`` and return its path."""
    archive = Path(root) / ARCHIVE_NAME
    # The download helper checks the SHA-256 of the gunzipped content for names ending in ".gz";
    # a staging name without that suffix makes it check the archive's own bytes, whose hash is the
    # published one. It writes atomically and only a verified file, which we then rename.
    staging = Path(root) / f".{ARCHIVE_NAME}.{os.getpid()}.download"  # one per process
    download(url, staging, sha256)
    try:
        verify_archive(staging, sha256, md5)
    except ValueError:
        staging.unlink(missing_ok=True)
        raise
    os.replace(staging, archive)
    return archive


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as handle:
        entry = pickle.load(handle, encoding="latin1")  # the batches were pickled by Python 2
    data = np.asarray(entry["data"], dtype=np.uint8)  # (N, 3072)
    labels = np.asarray(entry["labels"], dtype=np.int64)  # (N,)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != (data.shape[0],):
        raise ValueError(f"{path} does not hold CIFAR-10 batches (data {data.shape}, labels {labels.shape}).")
    return data.reshape(-1, 3, 32, 32), labels  # (N, 3, 32, 32): channel planes, then rows


def load(split: str, root: Path, download_if_missing: bool, *, url: str = URL,
         files: dict[str, str] | None = None, archive_sha256: str = ARCHIVE_SHA256,
         archive_md5: str = ARCHIVE_MD5) -> ArrayDataset:
    """Load one split as an :class:`ArrayDataset` of ``(N, 3, 32, 32)`` uint8 images.

    Args:
        split: ``"train"`` (50,000 images) or ``"test"`` (10,000).
        root: the data root; the batches live in ``<root>/cifar-10-batches-py``.
        download_if_missing: fetch the archive from ``url`` when neither the folder nor the
            archive is there.
        url: where to download from.
        files: batch name -> MD5 to verify (default: the published files).
        archive_sha256: expected SHA-256 of the archive (default: the published one).
        archive_md5: expected MD5 of the archive (default: torchvision's).

    Returns:
        The split, with ``classes`` the ten CIFAR-10 class names.

    Raises:
        ValueError: unknown split, or a file that does not match its checksum.
        FileNotFoundError: the data is missing and could not be downloaded; says where to put it.
    """
    if split not in SPLIT_FILES:
        raise ValueError(f"CIFAR-10 has no split {split!r}; its splits are: train, test.")
    root = Path(root)
    names = FILES if files is None else files
    folder = locate(root, names)
    if folder is None:
        archive = root / ARCHIVE_NAME
        how = (f"Download {URL} (170 MB) and either put the archive at {archive} or extract it there so that "
               f"{batches_dir(root)} holds data_batch_1..5 and test_batch; set COMPANION_DATA or pass root= "
               "to use another data folder.")
        if not archive.is_file():
            if not download_if_missing:
                raise FileNotFoundError(f"CIFAR-10 was not found in {batches_dir(root)} (nor {archive}) and "
                                        f"download=False. {how}")
            try:
                archive = fetch(root, url, archive_sha256, archive_md5)
            except (DownloadError, ValueError) as exc:
                raise FileNotFoundError(f"CIFAR-10 was not found in {batches_dir(root)}, and downloading it "
                                        f"failed ({exc}). {how}") from exc
        else:
            verify_archive(archive, archive_sha256, archive_md5)
        folder = extract(archive, root, names)
    arrays = []
    for name in SPLIT_FILES[split]:
        path = folder / name
        if md5_of(path) != names[name]:
            raise ValueError(f"{path} does not match the published CIFAR-10 file (checksum differs); delete "
                             f"{folder} and fetch {URL} again.")
        arrays.append(_read_batch(path))
    images = torch.from_numpy(np.concatenate([data for data, _ in arrays]))  # (N, 3, 32, 32) uint8
    labels = torch.from_numpy(np.concatenate([labels for _, labels in arrays]))  # (N,)
    return ArrayDataset(images, labels, classes=CLASSES, name=f"cifar10/{split}")
