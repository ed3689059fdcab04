"""Tests for companion/detection/datasets.py and masks.py.

stardist's real sample is read from the installed package. Penn-Fudan and VOC are tested on tiny
archives built here in ``tmp_path`` with the real datasets' folder layout: they are test fixtures
(random pixels, made-up boxes), never the datasets themselves. No test touches the network.
"""

import hashlib
import importlib.util
import io
import tarfile
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.ops as tv_ops
from PIL import Image

from companion.detection import datasets
from companion.detection.datasets import (
    DETECTION_DATASETS,
    PascalVOC,
    PennFudanPedestrians,
    get_detection_dataset,
    parse_voc_annotation,
    stardist_nuclei,
)
from companion.detection.masks import label_image_to_masks, masks_to_boxes

# ---------------------------------------------------------------------------------------------
# masks_to_boxes and label images


def test_masks_to_boxes_equals_torchvision_on_random_masks():
    generator = torch.Generator().manual_seed(0)
    masks = torch.rand(20, 17, 23, generator=generator) > 0.97  # (20, 17, 23) sparse random pixels
    masks[0] = False  # an empty mask
    masks[1] = False
    masks[1, 5, 7] = True  # a single pixel: x1 == x2, y1 == y2
    masks[2] = True  # the whole image
    boxes = masks_to_boxes(masks)
    assert boxes.dtype == torch.float32 and boxes.shape == (20, 4)
    assert torch.equal(boxes, tv_ops.masks_to_boxes(masks))
    assert boxes[0].tolist() == [0, 0, 0, 0]  # torchvision's convention for an empty mask
    assert boxes[1].tolist() == [7, 5, 7, 5] and boxes[2].tolist() == [0, 0, 22, 16]
    assert torch.equal(masks_to_boxes(masks.to(torch.uint8)), boxes)  # numeric masks too


def test_masks_to_boxes_of_no_masks_and_bad_shape():
    assert masks_to_boxes(torch.zeros(0, 8, 8, dtype=torch.bool)).shape == (0, 4)
    with pytest.raises(ValueError, match=r"masks must have shape \(K, H, W\)"):
        masks_to_boxes(torch.zeros(8, 8, dtype=torch.bool))


def test_label_image_to_masks_splits_non_consecutive_ids():
    label_image = torch.tensor([[0, 7, 7], [3, 0, 7]])
    masks, ids = label_image_to_masks(label_image)
    assert ids.tolist() == [3, 7]
    assert masks.dtype == torch.bool and masks.shape == (2, 2, 3)
    assert masks[0].tolist() == [[False, False, False], [True, False, False]]
    assert masks.sum().item() == 4
    with pytest.raises(ValueError, match="integer ids"):
        label_image_to_masks(label_image.float())


# ---------------------------------------------------------------------------------------------
# stardist


@pytest.mark.skipif(importlib.util.find_spec("stardist") is None, reason="needs `pip install --no-deps stardist`")
def test_stardist_nuclei_has_125_instances_with_boxes_from_their_masks():
    image, target = stardist_nuclei()
    assert image.shape == (3, 512, 512) and image.dtype == torch.float32
    assert image.min().item() == 0.0 and image.max().item() == 1.0
    masks, boxes = target["masks"], target["boxes"]
    assert masks.shape == (125, 512, 512) and masks.dtype == torch.bool
    assert masks.flatten(1).any(dim=1).all()  # no empty instance
    assert masks.sum().item() == masks.any(dim=0).sum().item()  # instances do not overlap
    assert torch.equal(target["labels"], torch.ones(125, dtype=torch.int64))
    assert torch.equal(boxes, tv_ops.masks_to_boxes(masks))
    assert (boxes[:, 2:] >= boxes[:, :2]).all() and boxes.min() >= 0 and boxes.max() <= 511
    grey, _ = stardist_nuclei(channels=1)
    assert grey.shape == (1, 512, 512) and torch.equal(grey[0], image[0])


def test_stardist_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    with pytest.raises(ModuleNotFoundError, match="pip install --no-deps stardist"):
        stardist_nuclei()


# ---------------------------------------------------------------------------------------------
# VOC annotations

VOC_XML = """<annotation>
  <filename>000001.jpg</filename>
  <size><width>32</width><height>24</height><depth>3</depth></size>
  <object><name>dog</name><difficult>0</difficult>
    <bndbox><xmin>3</xmin><ymin>2</ymin><xmax>20</xmax><ymax>11</ymax></bndbox></object>
  <object><name> person </name><difficult>1</difficult>
    <bndbox><xmin>10</xmin><ymin>5</ymin><xmax>32</xmax><ymax>24</ymax></bndbox></object>
  <object><name>aeroplane</name>
    <bndbox><xmin>1</xmin><ymin>1</ymin><xmax>1.0</xmax><ymax>4</ymax></bndbox></object>
</annotation>
"""


def test_parse_voc_annotation(tmp_path):
    path = tmp_path / "000001.xml"
    path.write_text(VOC_XML)
    target = parse_voc_annotation(path)
    assert target["labels"].tolist() == [12, 15, 1]  # dog, person, aeroplane in the standard order
    assert datasets.VOC_CLASSES[12] == "dog" and datasets.VOC_CLASSES[0] == "background"
    assert target["difficult"].tolist() == [False, True, False]  # a missing flag means not difficult
    expected = torch.tensor([[2, 1, 19, 10], [9, 4, 31, 23], [0, 0, 0, 3]], dtype=torch.float32)
    assert torch.equal(target["boxes"], expected)  # 1-based pixel indices -> 0-based


def test_parse_voc_annotation_without_objects_and_with_unknown_class(tmp_path):
    empty = tmp_path / "empty.xml"
    empty.write_text("<annotation><filename>x.jpg</filename></annotation>")
    target = parse_voc_annotation(empty)
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)
    unknown = tmp_path / "unknown.xml"
    unknown.write_text(VOC_XML.replace("dog", "unicorn"))
    with pytest.raises(ValueError, match="unknown class 'unicorn'"):
        parse_voc_annotation(unknown)


# ---------------------------------------------------------------------------------------------
# Fixtures: tiny archives with the real layouts (random pixels, made-up objects)


def _png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def penn_fudan_archive(tmp_path, monkeypatch):
    """A 4-image PennFudanPed.zip outside the data root; the module's constants point at it."""
    rng = np.random.default_rng(0)
    archive = tmp_path / "server" / "PennFudanPed.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zipped:
        for index, name in enumerate(["FudanPed00001", "FudanPed00002", "PennPed00001", "PennPed00002"]):
            zipped.writestr(f"PennFudanPed/PNGImages/{name}.png",
                            _png_bytes(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)))
            mask = np.zeros((24, 32), dtype=np.uint8)
            mask[2:10, 3 + index:8 + index] = 1
            mask[12:20, 20:30] = 2
            zipped.writestr(f"PennFudanPed/PedMasks/{name}_mask.png", _png_bytes(mask))
        zipped.writestr("PennFudanPed/readme.txt", "not used")
        zipped.writestr("PennFudanPed/Annotation/FudanPed00001.txt", "not used")
    monkeypatch.setattr(datasets, "PENN_FUDAN_IMAGES", 4)
    monkeypatch.setattr(datasets, "PENN_FUDAN_URL", archive.as_uri())
    monkeypatch.setattr(datasets, "PENN_FUDAN_MD5", _md5(archive))
    return archive


def _voc_xml(objects: list[tuple[str, int]]) -> str:
    body = "".join(f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>2</xmin>"
                   f"<ymin>3</ymin><xmax>10</xmax><ymax>12</ymax></bndbox></object>"
                   for name, difficult in objects)
    return f"<annotation><filename>x.jpg</filename>{body}</annotation>"


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _voc_tar(path: Path, year: str, lists: dict[str, list[str]], evil: bool = False) -> Path:
    rng = np.random.default_rng(1)
    base = f"VOCdevkit/VOC{year}"
    with tarfile.open(path, "w") as tar:
        for ids in lists.values():
            for image_id in ids:
                buffer = io.BytesIO()
                Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(buffer, format="JPEG")
                _add(tar, f"{base}/JPEGImages/{image_id}.jpg", buffer.getvalue())
                _add(tar, f"{base}/Annotations/{image_id}.xml", _voc_xml([("cat", 0), ("tvmonitor", 1)]).encode())
        for split, ids in lists.items():
            _add(tar, f"{base}/ImageSets/Main/{split}.txt", "\n".join(ids).encode())
        _add(tar, f"{base}/ImageSets/Main/cat_train.txt", b"not used")
        _add(tar, f"{base}/SegmentationClass/{ids[0]}.png", b"not used")
        if evil:  # names that try to escape the data folder; the loader must skip them
            _add(tar, f"{base}/Annotations/../../../evil.xml", b"<annotation/>")
            _add(tar, "../evil.xml", b"<annotation/>")
    return path


@pytest.fixture
def voc_archives(tmp_path, monkeypatch):
    """Fake VOC 2007 trainval and test tars outside the data root; VOC_ARCHIVES points at them."""
    server = tmp_path / "server"
    server.mkdir(exist_ok=True)
    trainval = _voc_tar(server / "trainval.tar", "2007",
                        {"train": ["000001", "000003"], "val": ["000002"],
                         "trainval": ["000001", "000002", "000003"]},
                        evil=True)
    test = _voc_tar(server / "test.tar", "2007", {"test": ["000004", "000005"]})
    archives = dict(datasets.VOC_ARCHIVES)
    archives["2007"] = (trainval.as_uri(), "VOCtrainval_06-Nov-2007.tar", _md5(trainval), "tiny")
    archives["2007-test"] = (test.as_uri(), "VOCtest_06-Nov-2007.tar", _md5(test), "tiny")
    monkeypatch.setattr(datasets, "VOC_ARCHIVES", archives)
    return archives


# ---------------------------------------------------------------------------------------------
# Penn-Fudan


def test_penn_fudan_downloads_verifies_and_splits(tmp_path, penn_fudan_archive):
    root = tmp_path / "data"
    splits = {split: get_detection_dataset("penn-fudan", split, root=root, download=True)
              for split in ("train", "val", "test")}
    assert (root / "PennFudanPed.zip").is_file() and (root / "PennFudanPed" / "PNGImages").is_dir()
    assert not (root / "PennFudanPed" / "readme.txt").exists()  # only what the loader reads
    names = [set(dataset.names) for dataset in splits.values()]
    assert [len(n) for n in names] == [2, 1, 1] and len(set.union(*names)) == 4  # disjoint, complete
    image, target = splits["train"][0]
    assert image.shape == (3, 24, 32) and image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1
    assert target["masks"].shape == (2, 24, 32) and target["labels"].tolist() == [1, 1]
    assert torch.equal(target["boxes"], tv_ops.masks_to_boxes(target["masks"]))
    assert target["boxes"][1].tolist() == [20, 12, 29, 19]
    assert PennFudanPedestrians.classes[0] == "background"
    other_seed = PennFudanPedestrians("test", root=root, seed=1)  # offline now: the folder is there
    assert len(other_seed) == 1


def test_penn_fudan_offline_error_says_where_and_how(tmp_path, penn_fudan_archive):
    root = tmp_path / "empty"
    with pytest.raises(FileNotFoundError) as error:
        get_detection_dataset("penn-fudan", root=root)
    message = str(error.value)
    for expected in ("Penn-Fudan", str(root / "PennFudanPed"), datasets.PENN_FUDAN_URL, "download=True",
                     str(root / "PennFudanPed.zip")):
        assert expected in message


def test_failed_download_is_a_clear_error_and_leaves_nothing(tmp_path, penn_fudan_archive, monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    root = tmp_path / "data"
    with pytest.raises(FileNotFoundError, match="network is unreachable") as error:
        get_detection_dataset("penn-fudan", root=root, download=True)
    assert datasets.PENN_FUDAN_URL in str(error.value)
    assert list(root.iterdir()) == []


def test_checksum_mismatch_leaves_nothing_behind(tmp_path, penn_fudan_archive, monkeypatch):
    monkeypatch.setattr(datasets, "PENN_FUDAN_MD5", "0" * 32)
    root = tmp_path / "data"
    with pytest.raises(FileNotFoundError, match="failed its checksum"):
        get_detection_dataset("penn-fudan", root=root, download=True)
    assert list(root.iterdir()) == []  # no archive, no partial file, no folder


def test_hand_placed_archive_is_verified(tmp_path, penn_fudan_archive):
    root = tmp_path / "data"
    root.mkdir()
    (root / "PennFudanPed.zip").write_bytes(b"not the archive")
    with pytest.raises(ValueError, match="not the published Penn-Fudan archive"):
        get_detection_dataset("penn-fudan", root=root)


def test_archive_with_missing_images_is_rejected_and_nothing_extracted(tmp_path, penn_fudan_archive, monkeypatch):
    monkeypatch.setattr(datasets, "PENN_FUDAN_IMAGES", 170)  # the fixture has 4, not the published 170
    root = tmp_path / "data"
    with pytest.raises(ValueError, match="does not hold 170 images"):
        get_detection_dataset("penn-fudan", root=root, download=True)
    assert [path.name for path in root.iterdir()] == ["PennFudanPed.zip"]  # verified archive only


# ---------------------------------------------------------------------------------------------
# PASCAL VOC


def test_voc_loads_every_split_from_the_archives(tmp_path, voc_archives):
    root = tmp_path / "data"
    train = get_detection_dataset("voc2007", "train", root=root, download=True)
    test = get_detection_dataset("voc2007", "test", root=root, download=True)  # the second archive
    assert train.names == ["000001", "000003"] and test.names == ["000004", "000005"]
    assert len(PascalVOC("2007", "val", root=root)) == 1 and len(PascalVOC("2007", "trainval", root=root)) == 3
    image, target = train[1]
    assert image.shape == (3, 20, 30) and image.dtype == torch.float32
    assert target["labels"].tolist() == [8, 20] and target["difficult"].tolist() == [False, True]
    assert torch.equal(target["boxes"], torch.tensor([[1.0, 2, 9, 11], [1, 2, 9, 11]]))
    assert PascalVOC.classes[0] == "background" and len(PascalVOC.classes) == 21
    folder = root / "VOCdevkit" / "VOC2007"
    assert not (folder / "SegmentationClass").exists()  # only what the loader reads
    assert not (folder / "ImageSets" / "Main" / "cat_train.txt").exists()
    assert not list(tmp_path.rglob("evil.xml"))  # the crafted names were skipped
    assert sorted(path.name for path in root.iterdir()) == ["VOCdevkit", "VOCtest_06-Nov-2007.tar",
                                                             "VOCtrainval_06-Nov-2007.tar"]  # no staging left


def test_voc_offline_error_and_bad_split(tmp_path, voc_archives):
    with pytest.raises(FileNotFoundError) as error:
        get_detection_dataset("voc2012", "val", root=tmp_path)
    message = str(error.value)
    assert "PASCAL VOC 2012" in message and str(tmp_path / "VOCdevkit" / "VOC2012") in message
    assert "VOCtrainval_11-May-2012.tar" in message and "download=True" in message
    with pytest.raises(ValueError, match="VOC 2012 has no split 'test'"):
        get_detection_dataset("voc2012", "test", root=tmp_path)


def test_archive_link_member_is_rejected(tmp_path, voc_archives, monkeypatch):
    archive = tmp_path / "server" / "link.tar"
    with tarfile.open(archive, "w") as tar:
        link = tarfile.TarInfo("VOCdevkit/VOC2007/Annotations/000001.xml")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    archives = dict(datasets.VOC_ARCHIVES)
    archives["2007"] = (archive.as_uri(), "VOCtrainval_06-Nov-2007.tar", _md5(archive), "tiny")
    monkeypatch.setattr(datasets, "VOC_ARCHIVES", archives)
    root = tmp_path / "data"
    with pytest.raises(ValueError, match="is not a regular file"):
        PascalVOC("2007", "train", root=root, download=True)
    assert not (root / "VOCdevkit").exists()


# ---------------------------------------------------------------------------------------------
# The loader


def test_unknown_name_lists_the_datasets():
    with pytest.raises(ValueError) as error:
        get_detection_dataset("coco")
    assert all(name in str(error.value) for name in DETECTION_DATASETS)


def test_fashion_scenes_are_delegated(monkeypatch, tmp_path):
    from companion.detection import scenes

    calls = []
    monkeypatch.setattr(scenes, "FashionScenes", lambda **kwargs: calls.append(kwargs) or "scenes")
    assert get_detection_dataset("fashion-scenes", "val", root=tmp_path, size=8, seed=3) == "scenes"
    assert calls == [{"split": "val", "root": tmp_path, "size": 8, "seed": 3}]
