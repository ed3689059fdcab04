"""Real segmentation data behind one loader: PASCAL VOC 2012, Oxford-IIIT Pets, Penn-Fudan.

Semantic datasets give ``(image float32 (3, H, W) in [0, 1], mask int64 (H, W))``: class ``0`` is the
background, ``1..C`` the classes, and ``IGNORE_INDEX`` (255) marks pixels that no loss or metric
should count (VOC's object outlines, the Pets trimaps' "not classified" band). Instance datasets give
torchvision's detection targets with ``"masks"``.

- ``"voc2012"``: PASCAL VOC 2012 segmentation (Everingham et al. 2015), 20 classes and the
  background, the official ``train`` (1,464 images), ``val`` (1,449) and ``trainval`` lists of
  ``ImageSets/Segmentation``. The masks are the palette PNGs of ``SegmentationClass``: a pixel's
  palette index is its class, 255 its "void" outline. Same archive as the detection loader (1.9 GB).
- ``"oxford-pets"``: the Oxford-IIIT Pet dataset (Parkhi, Vedaldi, Zisserman & Jawahar, CVPR 2012),
  37 breeds of cats and dogs with a trimap per image; the official ``trainval`` and ``test`` lists.
  ``labels="pet"`` gives background 0 / pet 1, ``labels="species"`` background 0 / cat 1 / dog 2; the
  trimaps' boundary band becomes 255 either way.
- ``"penn-fudan"``: pedestrians with instance masks (:class:`companion.detection.datasets.PennFudanPedestrians`).
- ``"fashion-scenes"``: the synthetic scenes as class masks (:class:`companion.segmentation.data.SceneSegmentation`).

``chapter_splits`` and ``training_examples`` give Part 4's chapters their data in either run profile:
the synthetic scenes in the quick profile, Oxford-IIIT Pets photos in the full profile.

Downloads are verified against the MD5s torchvision pins and extracted member by member through the
same checked machinery as the detection datasets (``companion.data.archives``); offline, a missing
dataset is a ``FileNotFoundError`` that says where to put which file.

Taught in: book/04_segmentation/01_semantic_segmentation.ipynb (the full profile's real data);
``chapter_splits``: 02_fcn.ipynb; ``training_examples``: 03_unet.ipynb.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from companion.data.archives import extract_matching, merge_into
from companion.data.registry import data_root
from companion.detection import datasets as detection
from companion.detection.datasets import VOC_CLASSES, read_rgb
from companion.segmentation.data import (
    IGNORE_INDEX,
    RandomCrops,
    ScaleCropPad,
    SceneSegmentation,
)

SEGMENTATION_DATASETS = ("fashion-scenes", "voc2012", "oxford-pets", "penn-fudan")
REAL_DATASETS = SEGMENTATION_DATASETS[1:]  # the downloaded ones, which find_offline looks for
VOC_SEGMENTATION_SPLITS = ("train", "val", "trainval")

PETS_FOLDER = "oxford-iiit-pet"  # torchvision's layout: <root>/oxford-iiit-pet/{images,annotations}
# Archive key -> (url, file name, md5, size for the messages); the MD5s torchvision pins.
PETS_ARCHIVES = {
    "images": ("https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz", "images.tar.gz",
               "5c4f3ee8e5d25df40f4fd59a7f44e54c", "about 790 MB"),
    "annotations": ("https://www.robots.ox.ac.uk/~vgg/data/pets/data/annotations.tar.gz", "annotations.tar.gz",
                    "95a8c909bbe2e81eed6a22bccdf3f68f", "about 19 MB"),
}
PETS_SPLITS = ("trainval", "test")
PETS_LABELS = {"pet": ("background", "pet"), "species": ("background", "cat", "dog")}
TRIMAP_PET, TRIMAP_BACKGROUND, TRIMAP_BORDER = 1, 2, 3  # the values of the Pets trimap PNGs


def _read_index_png(path: Path) -> torch.Tensor:
    """A single-channel PNG's values (palette indices for VOC, trimap codes for Pets) as int64 ``(H, W)``."""
    from PIL import Image

    with Image.open(path) as image:
        if image.mode not in ("P", "L"):
            raise ValueError(f"{path} is a {image.mode} image, not a palette or grey label PNG; the mask was "
                             f"converted after download. Delete it (or its dataset folder) and extract it again.")
        return torch.from_numpy(np.asarray(image).astype(np.int64))  # (H, W)


# ---------------------------------------------------------------------------------------------
# PASCAL VOC 2012 segmentation

_VOC_SEGMENTATION_MEMBER = re.compile(r"VOCdevkit/VOC2012/(JPEGImages/[\w-]+\.jpg|SegmentationClass/[\w-]+\.png|"
                                      r"ImageSets/Segmentation/(?:train|val|trainval)\.txt)")


def _voc_segmentation_ids(folder: Path, split: str) -> list[str] | None:
    """The ids of ``split`` when its list and every listed image and mask are in ``folder``, else None."""
    return detection.listed_ids(folder, f"ImageSets/Segmentation/{split}.txt",
                                ("JPEGImages/{}.jpg", "SegmentationClass/{}.png"))


def _install_voc_segmentation(root: Path, split: str, download: bool) -> None:
    url, filename, md5, size = detection.VOC_ARCHIVES["2012"]
    folder, archive = root / "VOCdevkit" / "VOC2012", root / filename
    how = detection._how_to_get(f"'voc2012', {split!r}", url, size, archive,
                                f"{folder}/ImageSets/Segmentation/{split}.txt, JPEGImages/ and SegmentationClass/ "
                                "exist", loader="get_segmentation_dataset")
    archive = detection._archive_on_disk(archive, url, md5, download, f"PASCAL VOC 2012 segmentation ({split})",
                                         folder, how)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=".voc2012-segmentation.", suffix=".part"))
    try:
        extract_matching(archive, _VOC_SEGMENTATION_MEMBER, staging, url)
        if _voc_segmentation_ids(staging, split) is None:
            raise ValueError(f"{archive} lacks ImageSets/Segmentation/{split}.txt or files it lists; it is not "
                             f"the published VOC 2012 archive. Delete it and fetch it again from {url}.")
        merge_into(staging, folder, last="Segmentation")  # shares VOC2012/ with the detection loader
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class VOCSegmentation(Dataset):
    """PASCAL VOC 2012 semantic segmentation: 21 classes (background first), void outlines 255.

    Args:
        split: ``"train"``, ``"val"`` or ``"trainval"``.
        root: the data root (default :func:`companion.data.data_root`); files in torchvision's layout,
            ``<root>/VOCdevkit/VOC2012``.
        download: fetch the official archive when neither the files nor the archive are there.

    Items: ``(image float32 (3, H, W), mask int64 (H, W))`` with values ``0..20`` and ``255``.
    """

    classes = VOC_CLASSES
    num_classes = len(VOC_CLASSES)

    def __init__(self, split: str = "train", root: str | Path | None = None, download: bool = False) -> None:
        if split not in VOC_SEGMENTATION_SPLITS:
            raise ValueError(f"VOC 2012 segmentation has no split {split!r}; its splits are: "
                             f"{', '.join(VOC_SEGMENTATION_SPLITS)}.")
        root = data_root(root)
        self.folder = root / "VOCdevkit" / "VOC2012"
        ids = _voc_segmentation_ids(self.folder, split)
        if ids is None:
            _install_voc_segmentation(root, split, download)
            ids = _voc_segmentation_ids(self.folder, split)
        self.names = ids

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        name = self.names[index]
        image = read_rgb(self.folder / "JPEGImages" / f"{name}.jpg")  # (3, H, W)
        mask = _read_index_png(self.folder / "SegmentationClass" / f"{name}.png")  # (H, W)
        bad = (mask >= self.num_classes) & (mask != IGNORE_INDEX)
        if bad.any():
            raise ValueError(f"{name}.png holds label {int(mask[bad][0])}, not a VOC class (0-20) or 255; "
                             f"the file is not a VOC 2012 mask. Delete {self.folder} and extract it again.")
        return image, mask


# ---------------------------------------------------------------------------------------------
# Oxford-IIIT Pets

_PETS_MEMBER = {
    "images": re.compile(r"(images/[\w-]+\.jpg)"),
    "annotations": re.compile(r"(annotations/trimaps/[\w-]+\.png|annotations/(?:trainval|test)\.txt)"),
}


def _pets_listing(folder: Path, split: str) -> list[tuple[str, int]] | None:
    """``(name, species)`` per line of ``annotations/<split>.txt`` (species 1 cat, 2 dog), None without it."""
    listing = folder / "annotations" / f"{split}.txt"
    if not listing.is_file():
        return None
    rows = []
    for line in listing.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _breed, species, *_ = line.split()
            rows.append((name, int(species)))
    return rows


def _pets_missing(folder: Path, split: str) -> list[str]:
    """Which archives (``"annotations"``, ``"images"``) ``split`` still needs in ``folder``."""
    rows = _pets_listing(folder, split)
    if rows is None:
        return ["annotations", "images"]
    missing = []
    if not all((folder / "annotations" / "trimaps" / f"{name}.png").is_file() for name, _ in rows):
        missing.append("annotations")
    if not all((folder / "images" / f"{name}.jpg").is_file() for name, _ in rows):
        missing.append("images")
    return missing


def _install_pets(root: Path, split: str, download: bool) -> None:
    folder = root / PETS_FOLDER
    for key in _pets_missing(folder, split):
        url, filename, md5, size = PETS_ARCHIVES[key]
        archive = folder / filename
        how = detection._how_to_get(f"'oxford-pets', {split!r}", url, size, archive,
                                    f"{folder}/annotations/{split}.txt, annotations/trimaps/ and images/ exist",
                                    loader="get_segmentation_dataset")
        folder.mkdir(parents=True, exist_ok=True)
        archive = detection._archive_on_disk(archive, url, md5, download, f"Oxford-IIIT Pets ({key})", folder, how)
        staging = Path(tempfile.mkdtemp(dir=folder, prefix=f".{key}.", suffix=".part"))
        try:
            extract_matching(archive, _PETS_MEMBER[key], staging, url)
            merge_into(staging, folder, last="annotations")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    if _pets_missing(folder, split):
        raise ValueError(f"the Oxford-IIIT Pets archives in {folder} lack annotations/{split}.txt or files it "
                         f"lists; they are not the published archives. Delete them and fetch them again.")


class OxfordPets(Dataset):
    """Oxford-IIIT Pets as semantic segmentation, from its trimaps.

    Args:
        split: ``"trainval"`` (3,680 images) or ``"test"`` (3,669).
        labels: ``"pet"`` (background 0, pet 1) or ``"species"`` (background 0, cat 1, dog 2).
        root: the data root (default :func:`companion.data.data_root`); files in torchvision's layout,
            ``<root>/oxford-iiit-pet/{images,annotations}``.
        download: fetch the two official archives when the files are not there.

    Items: ``(image float32 (3, H, W), mask int64 (H, W))``; the trimap's "not classified" band
    around every pet is ``IGNORE_INDEX`` (255).
    """

    def __init__(self, split: str = "trainval", labels: str = "pet", root: str | Path | None = None,
                 download: bool = False) -> None:
        if split not in PETS_SPLITS:
            raise ValueError(f"Oxford-IIIT Pets has no split {split!r}; its splits are: {', '.join(PETS_SPLITS)}.")
        if labels not in PETS_LABELS:
            raise ValueError(f"labels must be one of {tuple(PETS_LABELS)}, got {labels!r}.")
        root = data_root(root)
        self.folder, self.labels = root / PETS_FOLDER, labels
        self.classes = PETS_LABELS[labels]
        self.num_classes = len(self.classes)
        if _pets_missing(self.folder, split):
            _install_pets(root, split, download)
        rows = _pets_listing(self.folder, split)
        self.names = [name for name, _ in rows]
        self.species = [species for _, species in rows]

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        name = self.names[index]
        image = read_rgb(self.folder / "images" / f"{name}.jpg")  # (3, H, W)
        trimap = _read_index_png(self.folder / "annotations" / "trimaps" / f"{name}.png")  # (H, W) in 1..3
        if not bool(((trimap >= TRIMAP_PET) & (trimap <= TRIMAP_BORDER)).all()):
            raise ValueError(f"{name}.png holds values outside 1-3; it is not an Oxford-IIIT Pets trimap. "
                             f"Delete {self.folder} and extract the archives again.")
        pet_class = 1 if self.labels == "pet" else self.species[index]
        mask = torch.zeros_like(trimap)  # (H, W) background
        mask[trimap == TRIMAP_PET] = pet_class
        mask[trimap == TRIMAP_BORDER] = IGNORE_INDEX
        return image, mask


# ---------------------------------------------------------------------------------------------
# One loader


def find_offline(name: str, root: str | Path | None = None) -> Path | None:
    """Where a real dataset's complete files are (all its splits), or None; never downloads.

    ``python -m companion.doctor`` reports it. Names: ``"voc2012"``, ``"oxford-pets"``, ``"penn-fudan"``.
    """
    root = data_root(root)
    if name == "voc2012":
        folder = root / "VOCdevkit" / "VOC2012"
        return folder if _voc_segmentation_ids(folder, "trainval") is not None else None
    if name == "oxford-pets":
        folder = root / PETS_FOLDER
        return folder if not any(_pets_missing(folder, split) for split in PETS_SPLITS) else None
    if name == "penn-fudan":
        folder = root / detection.PENN_FUDAN_FOLDER
        return folder if detection._penn_fudan_pairs(folder) is not None else None
    raise ValueError(f"find_offline knows the real datasets {', '.join(REAL_DATASETS)}, not {name!r}.")



def get_segmentation_dataset(name: str, split: str = "train", *, root: str | Path | None = None,
                             download: bool = False, **options) -> Dataset:
    """A segmentation dataset by name.

    Args:
        name: one of ``SEGMENTATION_DATASETS``.
        split: VOC ``"train"``/``"val"``/``"trainval"``; Pets ``"trainval"``/``"test"``; Penn-Fudan
            and the scenes ``"train"``/``"val"``/``"test"``.
        root: the data root (default :func:`companion.data.data_root`).
        download: fetch a missing real dataset (verified); False makes a missing dataset an error
            that says how to get it. The synthetic scenes need only Fashion-MNIST.
        **options: passed on: Pets' ``labels``; Penn-Fudan's ``seed``; ``FashionScenes``'s ``size``,
            ``seed``, ...

    Returns:
        Semantic datasets (``voc2012``, ``oxford-pets``, ``fashion-scenes``) with items ``(image, mask)``;
        ``penn-fudan`` with items ``(image, target)`` whose target holds instance ``"masks"``.

    Raises:
        ValueError: unknown name or split.
        FileNotFoundError: the data is missing and could not be downloaded.
    """
    if name == "fashion-scenes":
        # imported here: the scenes build on Fashion-MNIST
        from companion.detection.scenes import FashionScenes

        return SceneSegmentation(FashionScenes(split=split, root=root, **options))
    if name == "voc2012":
        return VOCSegmentation(split, root=root, download=download, **options)
    if name == "oxford-pets":
        return OxfordPets(split, root=root, download=download, **options)
    if name == "penn-fudan":
        if detection._penn_fudan_pairs(data_root(root) / detection.PENN_FUDAN_FOLDER) is None:
            # fetch it here, so that an offline error names this function
            detection._install_penn_fudan(data_root(root), download, loader="get_segmentation_dataset")
        return detection.PennFudanPedestrians(split, root=root, download=download, **options)
    raise ValueError(f"unknown segmentation dataset {name!r}; the names are: {', '.join(SEGMENTATION_DATASETS)}.")


# ---------------------------------------------------------------------------------------------
# The data of Part 4's chapters in each run profile

CHAPTER_SIDE = 256  # the full profile's photos are brought to CHAPTER_SIDE x CHAPTER_SIDE


def chapter_splits(profile, *, train_size: int = 2000, test_size: int = 500, side: int = CHAPTER_SIDE,
                   root: str | Path | None = None) -> tuple[Dataset, Dataset]:
    """The training and test sets of Part 4's semantic chapters in a run profile.

    - quick: the synthetic scenes (:class:`companion.segmentation.data.SceneSegmentation`, seed 0),
      ``train_size`` training and ``test_size`` test scenes of 96 x 96 pixels;
    - full: Oxford-IIIT Pets labelled background, cat or dog (downloaded on first use, about 800 MB):
      the 3,680 ``trainval`` photos as they are (different sizes; :func:`training_examples` turns them
      into batches), and the 3,669 ``test`` photos resized to a longer side of ``side`` and padded to
      ``side x side`` with :class:`~companion.segmentation.data.ScaleCropPad` (padding labelled 255).

    Args:
        profile: a :class:`companion.profiles.Profile` (``companion.profile()``).
        train_size, test_size: numbers of scenes in the quick profile.
        side: the full profile's image side.
        root: the data root of the Pets files (default :func:`companion.data.data_root`).

    Returns:
        ``(train_set, test_set)``, both with ``classes`` and ``num_classes``.
    """
    if profile.name == "quick":
        return (get_segmentation_dataset("fashion-scenes", "train", size=train_size, seed=0),
                get_segmentation_dataset("fashion-scenes", "test", size=test_size, seed=0))
    pets = {"labels": "species", "root": root, "download": True}
    train_set = get_segmentation_dataset("oxford-pets", "trainval", **pets)
    return train_set, ScaleCropPad(get_segmentation_dataset("oxford-pets", "test", **pets), side, longer_side=side)


def training_examples(train_set: Dataset, profile, *, crop: int | None = None, side: int = CHAPTER_SIDE,
                      seed: int = 0) -> Dataset:
    """What a chapter trains on, from :func:`chapter_splits`'s ``train_set``.

    - quick: random ``crop x crop`` windows of the scenes (:class:`~companion.segmentation.data.RandomCrops`),
      or the whole scenes when ``crop`` is None;
    - full: :class:`~companion.segmentation.data.ScaleCropPad` with the longer side brought to ``side``
      times a random factor in [0.5, 2], padded, a random ``side x side`` window, flipped half the time.

    Call ``set_epoch(e)`` on the result before each epoch, where it has one, for new windows.
    """
    if profile.name == "quick":
        return train_set if crop is None else RandomCrops(train_set, size=crop, seed=seed)
    return ScaleCropPad(train_set, side, longer_side=side, scale=(0.5, 2.0), flip=True, seed=seed)
