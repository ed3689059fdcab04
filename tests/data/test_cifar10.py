"""CIFAR-10: the pickled layout parsed exactly, verified archives, safe extraction and clear errors.

Every test builds a tiny fake CIFAR-10 (a few images per batch) in a temporary folder; nothing is
ever fetched from the network (a fixture lets only ``file://`` URLs through).
"""

import hashlib
import io
import pickle
import tarfile
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from companion.data import cifar10

PER_BATCH = 3


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    real_urlopen = urllib.request.urlopen

    def local_only(url, *args, **kwargs):
        if not str(url).startswith("file://"):
            raise AssertionError(f"a test tried to reach the network: {url}")
        return real_urlopen(url, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", local_only)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def fake_batches() -> dict[str, bytes]:
    """Pickled batches in the published layout: {'data': uint8 (N, 3072), 'labels': [int]}."""
    generator = np.random.default_rng(0)
    files = {}
    for index, name in enumerate(cifar10.FILES):
        data = generator.integers(0, 256, size=(PER_BATCH, 3072), dtype=np.uint8)
        labels = [(index + k) % 10 for k in range(PER_BATCH)]
        files[name] = pickle.dumps({"batch_label": name, "labels": labels, "data": data,
                                    "filenames": [f"{name}_{k}.png" for k in range(PER_BATCH)]}, protocol=2)
    files["batches.meta"] = pickle.dumps({"label_names": list(cifar10.CLASSES), "num_vis": 3072}, protocol=2)
    return files


@pytest.fixture()
def fake():
    files = fake_batches()
    return files, {name: md5(content) for name, content in files.items() if name in cifar10.FILES}


def write_folder(root, files):
    folder = root / cifar10.FOLDER_NAME
    folder.mkdir(parents=True)
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return folder


def write_archive(path, members):
    """A .tar.gz of ``members``: name -> bytes (a regular file) or ("symlink", target)."""
    with tarfile.open(path, "w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            if isinstance(content, tuple):
                info.type, info.linkname = tarfile.SYMTYPE, content[1]
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    data = path.read_bytes()
    return hashlib.sha256(data).hexdigest(), md5(data)


def archive_members(files):
    return {f"{cifar10.FOLDER_NAME}/{name}": content for name, content in files.items()}


def leftovers(root):
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_the_pickled_layout_is_parsed_exactly(tmp_path, fake):
    files, checksums = fake
    write_folder(tmp_path, files)
    train = cifar10.load("train", tmp_path, download_if_missing=False, files=checksums)
    test = cifar10.load("test", tmp_path, download_if_missing=False, files=checksums)
    assert train.images.shape == (5 * PER_BATCH, 3, 32, 32) and train.images.dtype == torch.uint8
    assert test.images.shape == (PER_BATCH, 3, 32, 32) and train.labels.dtype == torch.int64
    raw = pickle.loads(files["data_batch_2"], encoding="latin1")
    # Row layout: red plane, green plane, blue plane, each 32 rows of 32 pixels.
    image, row = train.images[PER_BATCH + 1], raw["data"][1]
    assert image[0, 0, 5] == row[5] and image[1, 2, 3] == row[1024 + 2 * 32 + 3] and image[2, 31, 31] == row[3071]
    assert train.labels[PER_BATCH:2 * PER_BATCH].tolist() == raw["labels"]  # batches kept in order
    assert train.classes[0] == "airplane" and train.classes[9] == "truck" and test.name == "cifar10/test"


def test_equals_torchvision_on_the_same_folder(tmp_path, fake, monkeypatch):
    torchvision = pytest.importorskip("torchvision")
    files, checksums = fake
    write_folder(tmp_path, files)
    reference_class = torchvision.datasets.CIFAR10
    monkeypatch.setattr(reference_class, "train_list", [[n, checksums[n]] for n in cifar10.SPLIT_FILES["train"]])
    monkeypatch.setattr(reference_class, "test_list", [["test_batch", checksums["test_batch"]]])
    monkeypatch.setattr(reference_class, "meta", {"filename": "batches.meta", "key": "label_names",
                                                  "md5": md5(files["batches.meta"])})
    for split, train in (("train", True), ("test", False)):
        reference = reference_class(str(tmp_path), train=train, download=False)
        ours = cifar10.load(split, tmp_path, download_if_missing=False, files=checksums)
        assert torch.equal(ours.images.permute(0, 2, 3, 1), torch.from_numpy(reference.data))  # NCHW vs NHWC
        assert ours.labels.tolist() == reference.targets and tuple(reference.classes) == cifar10.CLASSES


def test_a_hand_placed_archive_is_verified_and_extracted(tmp_path, fake):
    files, checksums = fake
    sha, digest = write_archive(tmp_path / cifar10.ARCHIVE_NAME, archive_members(files))
    test = cifar10.load("test", tmp_path, download_if_missing=False, files=checksums,
                        archive_sha256=sha, archive_md5=digest)
    assert len(test) == PER_BATCH
    assert leftovers(tmp_path) == [cifar10.FOLDER_NAME, cifar10.ARCHIVE_NAME]
    assert sorted(p.name for p in (tmp_path / cifar10.FOLDER_NAME).iterdir()) == sorted(cifar10.FILES)
    assert cifar10.find_offline(tmp_path) == str(tmp_path / cifar10.FOLDER_NAME)


def test_a_hand_placed_archive_with_the_wrong_checksum_is_refused(tmp_path, fake):
    files, checksums = fake
    sha, digest = write_archive(tmp_path / cifar10.ARCHIVE_NAME, archive_members(files))
    with pytest.raises(ValueError, match="is not the published CIFAR-10 archive"):
        cifar10.load("test", tmp_path, download_if_missing=False, files=checksums,
                     archive_sha256="0" * 64, archive_md5=digest)
    assert leftovers(tmp_path) == [cifar10.ARCHIVE_NAME]  # nothing extracted
    assert cifar10.find_offline(tmp_path) == str(tmp_path / cifar10.ARCHIVE_NAME)


def test_download_verifies_then_extracts(tmp_path, fake):
    files, checksums = fake
    mirror = tmp_path / "mirror" / cifar10.ARCHIVE_NAME
    mirror.parent.mkdir()
    sha, digest = write_archive(mirror, archive_members(files))
    root = tmp_path / "data"
    train = cifar10.load("train", root, download_if_missing=True, url=mirror.as_uri(), files=checksums,
                         archive_sha256=sha, archive_md5=digest)
    assert len(train) == 5 * PER_BATCH
    assert leftovers(root) == [cifar10.FOLDER_NAME, cifar10.ARCHIVE_NAME]
    assert (root / cifar10.ARCHIVE_NAME).read_bytes() == mirror.read_bytes()


def test_a_download_with_the_wrong_checksum_leaves_nothing_behind(tmp_path, fake):
    files, checksums = fake
    mirror = tmp_path / "mirror" / cifar10.ARCHIVE_NAME
    mirror.parent.mkdir()
    sha, digest = write_archive(mirror, archive_members(files))
    root = tmp_path / "data"
    for wrong in ({"archive_sha256": "0" * 64, "archive_md5": digest},
                  {"archive_sha256": sha, "archive_md5": "0" * 32}):
        with pytest.raises(FileNotFoundError, match="checksum|not the published") as info:
            cifar10.load("test", root, download_if_missing=True, url=mirror.as_uri(), files=checksums, **wrong)
        assert cifar10.URL in str(info.value)
        assert leftovers(root) == []  # no archive, no partial download, no folder


def test_missing_offline_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        cifar10.load("train", tmp_path, download_if_missing=False)
    message = str(info.value)
    assert cifar10.URL in message and str(tmp_path / cifar10.FOLDER_NAME) in message
    assert "download=False" in message and cifar10.ARCHIVE_NAME in message
    assert leftovers(tmp_path) == [] and cifar10.find_offline(tmp_path) is None


def test_an_unreachable_mirror_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="downloading it failed"):
        cifar10.load("test", tmp_path / "data", download_if_missing=True,
                     url=(tmp_path / "no-such-mirror.tar.gz").as_uri())
    assert leftovers(tmp_path / "data") == []


def test_a_modified_local_batch_is_refused(tmp_path, fake):
    files, checksums = fake
    folder = write_folder(tmp_path, files)
    content = bytearray(files["test_batch"])
    content[-20] ^= 0xFF
    (folder / "test_batch").write_bytes(bytes(content))
    with pytest.raises(ValueError, match="does not match the published CIFAR-10 file"):
        cifar10.load("test", tmp_path, download_if_missing=False, files=checksums)


def test_extraction_cannot_escape_the_data_folder(tmp_path, fake):
    files, checksums = fake
    root = tmp_path / "data"
    root.mkdir()
    members = archive_members(files)
    members["../escaped"] = b"outside"
    members[f"{cifar10.FOLDER_NAME}/../../escaped_too"] = b"outside"
    members["/tmp/absolute_escape_cifar_test"] = b"outside"
    sha, digest = write_archive(root / cifar10.ARCHIVE_NAME, members)
    cifar10.load("test", root, download_if_missing=False, files=checksums, archive_sha256=sha, archive_md5=digest)
    assert not (tmp_path / "escaped").exists() and not (tmp_path / "escaped_too").exists()
    assert not Path("/tmp/absolute_escape_cifar_test").exists()
    assert sorted(p.name for p in (root / cifar10.FOLDER_NAME).iterdir()) == sorted(cifar10.FILES)

    # A link in place of a batch file is refused, and nothing is left half-extracted.
    linked_root = tmp_path / "linked"
    linked_root.mkdir()
    members = archive_members(files)
    members[f"{cifar10.FOLDER_NAME}/test_batch"] = ("symlink", "/etc/passwd")
    sha, digest = write_archive(linked_root / cifar10.ARCHIVE_NAME, members)
    with pytest.raises(ValueError, match="not a regular file"):
        cifar10.load("test", linked_root, download_if_missing=False, files=checksums,
                     archive_sha256=sha, archive_md5=digest)
    assert leftovers(linked_root) == [cifar10.ARCHIVE_NAME]


def test_unknown_split_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no split 'val'"):
        cifar10.load("val", tmp_path, download_if_missing=False)
