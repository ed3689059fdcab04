"""Real segmentation datasets from tiny fake archives: layout, labels, checks, offline errors.

The archives are built here with the official layouts; the module's URL/MD5 tables are pointed at
them, so downloading, verification and extraction run for real without a network. torchvision's own
readers load the same extracted folders as the independent reference.
"""

import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from companion.detection import datasets as detection
from companion.segmentation import datasets
from companion.segmentation.data import IGNORE_INDEX
from companion.segmentation.datasets import OxfordPets, VOCSegmentation, find_offline, get_segmentation_dataset


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _png(array: np.ndarray, palette: bool = False) -> bytes:
    image = Image.fromarray(array.astype(np.uint8), mode="P" if palette else "L")
    if palette:
        image.putpalette([value for index in range(256) for value in (index, 255 - index, 7 * index % 256)])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg(rng: np.random.Generator, height: int, width: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


def _voc_mask(index: int) -> np.ndarray:
    """A VOC-style mask: background, two classes, a void outline (255) around one of them."""
    mask = np.zeros((20, 30), dtype=np.uint8)
    mask[2:9, 3:12] = 255
    mask[3:8, 4:11] = 1 + index  # class 1 + index inside its void outline
    mask[12:18, 15:28] = 20  # tvmonitor
    return mask


VOC_LISTS = {"train": ["2007_000032", "2007_000039"], "val": ["2007_000033"],
             "trainval": ["2007_000032", "2007_000033", "2007_000039"]}


@pytest.fixture
def voc_archive(tmp_path, monkeypatch):
    """A fake VOCtrainval_11-May-2012.tar outside the data root; VOC_ARCHIVES["2012"] points at it."""
    rng = np.random.default_rng(0)
    archive = tmp_path / "server" / "voc2012.tar"
    archive.parent.mkdir(exist_ok=True)
    base = "VOCdevkit/VOC2012"
    with tarfile.open(archive, "w") as tar:
        for index, image_id in enumerate(VOC_LISTS["trainval"]):
            _add(tar, f"{base}/JPEGImages/{image_id}.jpg", _jpeg(rng, 20, 30))
            _add(tar, f"{base}/SegmentationClass/{image_id}.png", _png(_voc_mask(index), palette=True))
            _add(tar, f"{base}/SegmentationObject/{image_id}.png", _png(_voc_mask(0), palette=True))
            _add(tar, f"{base}/Annotations/{image_id}.xml", b"<annotation/>")
        for split, ids in VOC_LISTS.items():
            _add(tar, f"{base}/ImageSets/Segmentation/{split}.txt", "\n".join(ids).encode())
        _add(tar, f"{base}/ImageSets/Main/train.txt", b"2007_000032")
        _add(tar, f"{base}/SegmentationClass/../../../evil.png", b"x")  # must be skipped
    archives = dict(detection.VOC_ARCHIVES)
    archives["2012"] = (archive.as_uri(), "VOCtrainval_11-May-2012.tar", _md5(archive), "tiny")
    monkeypatch.setattr(detection, "VOC_ARCHIVES", archives)
    return archive


def test_voc_segmentation_reads_the_palette_indices_as_classes_like_torchvision(tmp_path, voc_archive):
    from torchvision.datasets import VOCSegmentation as TorchvisionVOC

    root = tmp_path / "data"
    train = get_segmentation_dataset("voc2012", "train", root=root, download=True)
    assert train.names == VOC_LISTS["train"] and len(VOCSegmentation("val", root=root)) == 1
    assert len(VOCSegmentation("trainval", root=root)) == 3
    assert train.classes[0] == "background" and train.classes[20] == "tvmonitor" and train.num_classes == 21
    reference = TorchvisionVOC(str(root), year="2012", image_set="train")
    for index in range(len(train)):
        image, mask = train[index]
        expected_image, expected_mask = reference[index]
        assert image.shape == (3, 20, 30) and image.dtype == torch.float32
        assert torch.equal(image, torch.from_numpy(np.array(expected_image)).permute(2, 0, 1).float() / 255)
        assert mask.dtype == torch.int64 and torch.equal(mask, torch.from_numpy(np.array(expected_mask)).long())
    assert torch.equal(train[1][1], torch.from_numpy(_voc_mask(2)).long())  # 2007_000039 is the third image
    assert set(train[0][1].unique().tolist()) == {0, 1, 20, IGNORE_INDEX}
    folder = root / "VOCdevkit" / "VOC2012"
    assert not (folder / "SegmentationObject").exists() and not (folder / "Annotations").exists()
    assert not list(tmp_path.rglob("evil.png"))
    assert sorted(path.name for path in root.iterdir()) == ["VOCdevkit", "VOCtrainval_11-May-2012.tar"]


def test_voc_segmentation_offline_error_bad_split_and_bad_masks(tmp_path, voc_archive):
    with pytest.raises(FileNotFoundError) as error:
        get_segmentation_dataset("voc2012", "val", root=tmp_path / "empty")
    message = str(error.value)
    assert "PASCAL VOC 2012 segmentation" in message and "VOCtrainval_11-May-2012.tar" in message
    assert str(tmp_path / "empty" / "VOCdevkit" / "VOC2012") in message and "download=True" in message
    with pytest.raises(ValueError, match="no split 'test'"):
        VOCSegmentation("test", root=tmp_path)
    root = tmp_path / "data"
    data = VOCSegmentation("train", root=root, download=True)
    mask_path = root / "VOCdevkit" / "VOC2012" / "SegmentationClass" / "2007_000032.png"
    mask_path.write_bytes(_png(np.full((20, 30), 30)))  # 30 is no VOC class
    with pytest.raises(ValueError, match="holds label 30"):
        data[0]
    Image.fromarray(np.zeros((20, 30, 3), dtype=np.uint8)).save(mask_path)  # an RGB rendering of a mask
    with pytest.raises(ValueError, match="converted after download"):
        data[0]


# ---------------------------------------------------------------------------------------------
# Oxford-IIIT Pets

PETS = [("Abyssinian_1", 1, 1), ("Abyssinian_2", 1, 1), ("beagle_1", 12, 2), ("beagle_3", 12, 2)]
PETS_SPLITS = {"trainval": PETS[:3], "test": PETS[3:]}


def _trimap(index: int) -> np.ndarray:
    trimap = np.full((16, 24), 2, dtype=np.uint8)  # background
    trimap[2:12, 3 + index:15 + index] = 3  # the "not classified" band
    trimap[4:10, 5 + index:13 + index] = 1  # the pet
    return trimap


@pytest.fixture
def pets_archives(tmp_path, monkeypatch):
    """Fake images.tar.gz and annotations.tar.gz; PETS_ARCHIVES points at them."""
    rng = np.random.default_rng(1)
    server = tmp_path / "server"
    server.mkdir(exist_ok=True)
    images, annotations = server / "images.tar.gz", server / "annotations.tar.gz"
    with tarfile.open(images, "w:gz") as tar:
        for name, _, _ in PETS:
            _add(tar, f"images/{name}.jpg", _jpeg(rng, 16, 24))
        _add(tar, "images/Abyssinian_100.mat", b"not an image")  # the real archive has a few of these
    with tarfile.open(annotations, "w:gz") as tar:
        for index, (name, _, _) in enumerate(PETS):
            _add(tar, f"annotations/trimaps/{name}.png", _png(_trimap(index)))
            _add(tar, f"annotations/trimaps/._{name}.png", b"macOS metadata")  # skipped
            _add(tar, f"annotations/xmls/{name}.xml", b"<annotation/>")
        for split, rows in PETS_SPLITS.items():
            lines = [f"{name} {breed} {species} 1" for name, breed, species in rows]  # no header, as published
            _add(tar, f"annotations/{split}.txt", "\n".join(lines).encode())
    monkeypatch.setattr(datasets, "PETS_ARCHIVES", {
        "images": (images.as_uri(), "images.tar.gz", _md5(images), "tiny"),
        "annotations": (annotations.as_uri(), "annotations.tar.gz", _md5(annotations), "tiny")})
    return images, annotations


def test_oxford_pets_masks_from_trimaps_match_torchvision(tmp_path, pets_archives):
    from torchvision.datasets import OxfordIIITPet

    root = tmp_path / "data"
    pets = get_segmentation_dataset("oxford-pets", "trainval", root=root, download=True)
    species = OxfordPets("trainval", labels="species", root=root)
    assert pets.names == [name for name, _, _ in PETS_SPLITS["trainval"]] and len(OxfordPets("test", root=root)) == 1
    assert pets.classes == ("background", "pet") and species.classes == ("background", "cat", "dog")
    reference = OxfordIIITPet(str(root), split="trainval", target_types="segmentation")
    for index in range(len(pets)):
        image, mask = pets[index]
        expected_image, trimap = reference[index]
        trimap = torch.from_numpy(np.array(trimap)).long()
        assert torch.equal(image, torch.from_numpy(np.array(expected_image)).permute(2, 0, 1).float() / 255)
        assert torch.equal(mask == 1, trimap == 1) and torch.equal(mask == 0, trimap == 2)
        assert torch.equal(mask == IGNORE_INDEX, trimap == 3) and mask.dtype == torch.int64
        cat_or_dog = PETS_SPLITS["trainval"][index][2]
        assert torch.equal(species[index][1], torch.where(mask == 1, cat_or_dog, mask))
    folder = root / "oxford-iiit-pet"
    assert not (folder / "annotations" / "xmls").exists() and not list(folder.rglob("._*"))
    assert not list(folder.rglob("*.mat")) and not list(folder.glob(".*.part"))


def test_oxford_pets_offline_errors_and_bad_input(tmp_path, pets_archives):
    with pytest.raises(FileNotFoundError) as error:
        OxfordPets("test", root=tmp_path / "empty")
    message = str(error.value)
    assert "Oxford-IIIT Pets (annotations)" in message and "annotations.tar.gz" in message
    assert "download=True" in message and str(tmp_path / "empty" / "oxford-iiit-pet") in message
    with pytest.raises(ValueError, match="no split 'val'"):
        OxfordPets("val", root=tmp_path)
    with pytest.raises(ValueError, match="labels must be one of"):
        OxfordPets("test", labels="breed", root=tmp_path)
    root = tmp_path / "data"
    data = OxfordPets("test", root=root, download=True)
    # Only the images missing: the annotations stay, and only the images archive is needed again.
    image_path = root / "oxford-iiit-pet" / "images" / "beagle_3.jpg"
    image_path.unlink()
    (root / "oxford-iiit-pet" / "images.tar.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"Oxford-IIIT Pets \(images\)"):
        OxfordPets("test", root=root)
    assert len(OxfordPets("test", root=root, download=True)) == 1 and image_path.is_file()
    trimap_path = root / "oxford-iiit-pet" / "annotations" / "trimaps" / "beagle_3.png"
    trimap_path.write_bytes(_png(np.full((16, 24), 4)))
    with pytest.raises(ValueError, match="outside 1-3"):
        data[0]


# ---------------------------------------------------------------------------------------------
# The loader


def test_unknown_name_lists_the_datasets():
    with pytest.raises(ValueError, match="voc2012, oxford-pets, penn-fudan"):
        get_segmentation_dataset("cityscapes")


def test_scenes_and_penn_fudan_are_delegated(monkeypatch, tmp_path):
    scenes = get_segmentation_dataset("fashion-scenes", "val", size=3, seed=0)
    image, mask = scenes[0]
    assert len(scenes) == 3 and image.shape == (3, 96, 96) and mask.shape == (96, 96)
    with pytest.raises(FileNotFoundError, match=r"get_segmentation_dataset\('penn-fudan', download=True\)"):
        get_segmentation_dataset("penn-fudan", "train", root=tmp_path)  # offline: the message names this loader
    calls = []
    monkeypatch.setattr(detection, "_penn_fudan_pairs", lambda folder: ["FudanPed00001"])  # "on disk"
    monkeypatch.setattr(detection, "PennFudanPedestrians",
                        lambda split, **kwargs: calls.append((split, kwargs)) or "penn-fudan")
    assert get_segmentation_dataset("penn-fudan", "test", root=tmp_path, seed=3) == "penn-fudan"
    assert calls == [("test", {"root": tmp_path, "download": False, "seed": 3})]


def test_find_offline_reports_complete_copies_only(tmp_path, voc_archive, pets_archives):
    root = tmp_path / "data"
    assert find_offline("voc2012", root=root) is None and find_offline("oxford-pets", root=root) is None
    assert find_offline("penn-fudan", root=root) is None
    VOCSegmentation("trainval", root=root, download=True)
    assert find_offline("voc2012", root=root) == root / "VOCdevkit" / "VOC2012"
    OxfordPets("trainval", root=root, download=True)  # the archives hold both splits
    assert find_offline("oxford-pets", root=root) == root / "oxford-iiit-pet"
    (root / "oxford-iiit-pet" / "images" / "beagle_3.jpg").unlink()  # the test split is now incomplete
    assert find_offline("oxford-pets", root=root) is None
    assert not (root / "oxford-iiit-pet" / "images" / "beagle_3.jpg").exists()  # nothing was downloaded
    with pytest.raises(ValueError, match="not 'coco'"):
        find_offline("coco", root=root)


# ---------------------------------------------------------------------------------------------
# The chapters' data in each profile


def test_chapter_splits_full_profile_is_oxford_pets_in_fixed_size_batches(tmp_path, pets_archives):
    from companion.profiles import profile
    from companion.segmentation.data import ScaleCropPad, pixel_fractions
    from companion.segmentation.datasets import chapter_splits, training_examples

    root = tmp_path / "data"
    train_set, test_set = chapter_splits(profile("full"), side=20, root=root)  # downloads the fake archives
    assert isinstance(train_set, OxfordPets) and train_set.labels == "species" and len(train_set) == 3
    assert isinstance(test_set, ScaleCropPad) and test_set.longer_side == 20 and len(test_set) == 1
    assert test_set.classes == ("background", "cat", "dog") and test_set.num_classes == 3
    image, mask = test_set[0]  # a 16 x 24 photo -> 13 x 20, padded to 20 x 20
    assert image.shape == (3, 20, 20) and bool((mask[13:] == IGNORE_INDEX).all())
    assert set(mask[:13].unique().tolist()) <= {0, 2, IGNORE_INDEX}  # the test pet is a dog (beagle)
    examples = training_examples(train_set, profile("full"), side=20, seed=1)
    assert isinstance(examples, ScaleCropPad) and examples.flip and examples.scale == (0.5, 2.0)
    images, masks = examples.__getitems__([0, 1, 2])
    assert images.shape == (3, 3, 20, 20) and masks.shape == (3, 20, 20)
    # Pixel shares over the photos: trimap pets are cats (1) in trainval's Abyssinians, dogs (2) in beagles.
    fractions = pixel_fractions(train_set, 3)
    counted = torch.cat([train_set[i][1].flatten() for i in range(3)])
    counted = counted[counted != IGNORE_INDEX]
    assert torch.allclose(fractions, torch.bincount(counted, minlength=3).double() / counted.numel())
    assert fractions.sum().item() == pytest.approx(1.0) and float(fractions[2]) > 0


def test_chapter_splits_quick_profile_is_the_scenes_and_fractions_are_checked():
    from companion.profiles import profile
    from companion.segmentation.data import RandomCrops, SceneSegmentation, pixel_fractions
    from companion.segmentation.datasets import chapter_splits, training_examples

    train_set, test_set = chapter_splits(profile("quick"), train_size=12, test_size=4)
    assert isinstance(train_set, SceneSegmentation) and len(train_set) == 12 and len(test_set) == 4
    assert training_examples(train_set, profile("quick")) is train_set
    crops = training_examples(train_set, profile("quick"), crop=40, seed=3)
    assert isinstance(crops, RandomCrops) and crops.size == 40 and crops.seed == 3
    fractions = pixel_fractions(train_set, train_set.num_classes)
    expected = torch.bincount(train_set.masks.flatten(), minlength=6).double() / train_set.masks.numel()
    assert torch.allclose(fractions, expected)
    assert torch.allclose(pixel_fractions(train_set, 6, every=5),
                          torch.bincount(train_set.masks[::5].flatten(), minlength=6).double() / (3 * 96 * 96))
    with pytest.raises(ValueError, match="pass the dataset's num_classes"):
        pixel_fractions(train_set, 3)
    with pytest.raises(ValueError, match="every must be a positive"):
        pixel_fractions(train_set, 6, every=0)
