"""Real detection data behind one loader: stardist's nuclei, Penn-Fudan pedestrians, PASCAL VOC.

Every dataset item is ``(image, target)``: a float32 ``(3, H, W)`` image in ``[0, 1]`` and a target
dict with ``"boxes"`` ``(K, 4)`` float32 ``xyxy`` and ``"labels"`` ``(K,)`` int64 in ``1..C``
(0 is the background, ``dataset.classes[0] == "background"``), plus ``"masks"`` ``(K, H, W)`` bool
where the dataset has instance masks and ``"difficult"`` ``(K,)`` bool for VOC.

Boxes follow one convention throughout, torchvision's ``masks_to_boxes``: corners are the 0-based
indices of an object's first and last pixel. VOC's XML stores 1-based pixel indices, so one is
subtracted from all four numbers.

- ``stardist_nuclei()``: one fluorescence microscopy image with 125 annotated nuclei, shipped
  inside the ``stardist`` package (a crop from the 2018 Data Science Bowl, Caicedo et al. 2019).
  Read from the package's files without importing ``stardist`` (that import needs TensorFlow).
- ``"penn-fudan"``: 170 street images with 345 labelled pedestrians and their instance masks
  (Wang, Shi, Song & Shen, ACCV 2007). It has no official split; ours is a permutation of the
  images seeded by ``seed``: 25 test, 25 validation and 120 training images. Boxes come from the
  masks.
- ``"voc2007"``, ``"voc2012"``: PASCAL VOC detection (Everingham et al. 2010), 20 classes, the
  official ``train``/``val``/``trainval`` lists (and ``test`` for 2007).
- ``"fashion-scenes"``: the synthetic scenes of :mod:`companion.detection.scenes`.

Downloads are streamed to a temporary file and verified before they are renamed into place; a
failed or mismatching download leaves nothing behind. Archives are extracted member by member,
only regular files whose names match the dataset's layout, written to paths built from those
checked names (no path traversal, no links), into a staging folder that is moved into place once
complete. Checksums: VOC's MD5s are torchvision's. Penn-Fudan's home page publishes none; the MD5
used here is the one the Avalanche library (ContinualAI) checks its download against. We could not
verify it ourselves offline, so the extracted archive is also checked for its published structure:
170 images, each with its mask.

Taught in: book/03_detection (the full profile's real data; stardist's nuclei in 01_boxes_iou).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import tempfile
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from companion.data.archives import extract_matching, fetch_archive, md5_of, merge_into
from companion.data.download import DownloadError
from companion.data.registry import data_root
from companion.detection.masks import label_image_to_masks, masks_to_boxes

DETECTION_DATASETS = ("fashion-scenes", "penn-fudan", "voc2007", "voc2012")

STARDIST_INSTALL = "pip install --no-deps stardist"
STARDIST_CLASSES = ("background", "nucleus")

PENN_FUDAN_URL = "https://www.cis.upenn.edu/~jshi/ped_html/PennFudanPed.zip"
PENN_FUDAN_ARCHIVE = "PennFudanPed.zip"
PENN_FUDAN_MD5 = "5aaa3dee905cef73325923716e38fc6d"  # as checked by ContinualAI's Avalanche
PENN_FUDAN_FOLDER = "PennFudanPed"  # what the archive extracts to
PENN_FUDAN_IMAGES = 170  # the published count of images (and of masks)
PENN_FUDAN_CLASSES = ("background", "pedestrian")
PENN_FUDAN_SPLITS = ("train", "val", "test")
PENN_FUDAN_HELD_OUT = 0.15  # share of the images in each of val and test

VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
               "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
               "train", "tvmonitor")
# Archive key -> (url, file name, md5, size for the messages); torchvision's VOC URLs and MD5s.
VOC_ARCHIVES = {
    "2007": ("https://thor.robots.ox.ac.uk/pascal/VOC/voc2007/VOCtrainval_06-Nov-2007.tar",
             "VOCtrainval_06-Nov-2007.tar", "c52e279531787c972589f7e41ab4ae64", "about 440 MB"),
    "2007-test": ("https://thor.robots.ox.ac.uk/pascal/VOC/voc2007/VOCtest_06-Nov-2007.tar",
                  "VOCtest_06-Nov-2007.tar", "b6e924de25625d8de591ea690078ad9f", "about 430 MB"),
    "2012": ("https://thor.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
             "VOCtrainval_11-May-2012.tar", "6cd6e144f989b92b3379bac3b3de84fd", "about 1.9 GB"),
}
VOC_SPLITS = {"2007": ("train", "val", "trainval", "test"), "2012": ("train", "val", "trainval")}


# ---------------------------------------------------------------------------------------------
# Images


def read_rgb(path: str | Path) -> torch.Tensor:
    """An image file as a float32 ``(3, H, W)`` tensor in ``[0, 1]``."""
    from PIL import Image  # torchvision's dependency; imported here to keep the module cheap

    with Image.open(path) as image:
        pixels = np.asarray(image.convert("RGB"))  # (H, W, 3) uint8
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).float() / 255.0  # (3, H, W)


def _read_label_image(path: Path) -> torch.Tensor:
    from PIL import Image

    with Image.open(path) as image:
        return torch.from_numpy(np.asarray(image).astype(np.int64))  # (H, W) instance ids, 0 background


def _target_from_label_image(label_image: torch.Tensor) -> dict[str, torch.Tensor]:
    masks, _ = label_image_to_masks(label_image)  # (K, H, W) bool
    return {"boxes": masks_to_boxes(masks), "labels": torch.ones(masks.shape[0], dtype=torch.int64),
            "masks": masks}


# ---------------------------------------------------------------------------------------------
# stardist's nuclei


def stardist_folder() -> Path:
    """The folder of the ``stardist`` package's sample images, found without importing it."""
    spec = importlib.util.find_spec("stardist")  # locates the package; runs none of its code
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the stardist package is not installed; install its data files with "
                                  f"`{STARDIST_INSTALL}` (--no-deps skips TensorFlow, which is not needed here).")
    for location in spec.submodule_search_locations:
        folder = Path(location) / "data" / "images"
        if (folder / "img2d.tif").is_file() and (folder / "mask2d.tif").is_file():
            return folder
    raise FileNotFoundError(f"stardist is installed at {list(spec.submodule_search_locations)} but its "
                            f"data/images/img2d.tif and mask2d.tif are missing; reinstall it with "
                            f"`{STARDIST_INSTALL} --force-reinstall`.")


def stardist_nuclei(channels: int = 3) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """stardist's 2-D sample: a fluorescence image of nuclei and its 125 instance masks.

    The image is stored as 16-bit integers; it is rescaled to ``[0, 1]`` by its own minimum and
    maximum. Boxes come from the masks with :func:`~companion.detection.masks.masks_to_boxes`.

    Args:
        channels: 3 (the grey image repeated, what detectors expect) or 1.

    Returns:
        ``image``: float32 ``(channels, H, W)`` in ``[0, 1]``; ``target``: ``boxes`` ``(K, 4)``,
        ``labels`` ``(K,)`` all 1 (``STARDIST_CLASSES[1] == "nucleus"``), ``masks`` ``(K, H, W)``
        bool, one per instance id in increasing order.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}.")
    try:
        import tifffile  # a dependency of scikit-image
    except ImportError as exc:
        raise ImportError("reading stardist's TIFF files needs tifffile: `pip install tifffile` "
                          "(scikit-image installs it).") from exc
    folder = stardist_folder()
    pixels = tifffile.imread(folder / "img2d.tif").astype(np.float32)  # (H, W)
    label_image = torch.from_numpy(tifffile.imread(folder / "mask2d.tif").astype(np.int64))  # (H, W)
    image = torch.from_numpy(pixels)
    image = (image - image.min()) / (image.max() - image.min())  # (H, W) in [0, 1]
    image = image.unsqueeze(0).repeat(channels, 1, 1)  # (channels, H, W)
    return image, _target_from_label_image(label_image)


def _archive_on_disk(archive: Path, url: str, md5: str, download: bool, what: str, folder: Path, how: str) -> Path:
    """The verified archive of ``what``: hand-placed (checked) or downloaded; a clear error otherwise."""
    if archive.is_file():
        actual = md5_of(archive)
        if actual != md5:
            raise ValueError(f"{archive} is not the published {what} archive (md5 {actual}, expected {md5}); "
                             f"delete it and fetch it again from {url}.")
        return archive
    missing = f"{what} was not found in {folder} (or is incomplete there), nor the archive {archive},"
    if not download:
        raise FileNotFoundError(f"{missing} and download=False. {how}")
    try:
        return fetch_archive(url, archive, md5)
    except DownloadError as exc:
        raise FileNotFoundError(f"{missing} and downloading it failed ({exc}). {how}") from exc


def _how_to_get(arguments: str, url: str, size: str, archive: Path, layout: str,
                loader: str = "get_detection_dataset") -> str:
    return (f"Either call {loader}({arguments}, download=True) online, or download {url} ({size}) "
            f"and put it at {archive}, or extract it so that {layout}. Set COMPANION_DATA or pass root= "
            "to use another data folder.")


# ---------------------------------------------------------------------------------------------
# Penn-Fudan pedestrians

_PENN_FUDAN_MEMBER = re.compile(rf"{PENN_FUDAN_FOLDER}/(PNGImages/\w+\.png|PedMasks/\w+_mask\.png)")


def _penn_fudan_pairs(folder: Path) -> list[str] | None:
    """Image stems with both image and mask in ``folder``, when the structure is complete."""
    images = sorted(path.stem for path in (folder / "PNGImages").glob("*.png"))
    masks = sorted(path.name.removesuffix("_mask.png") for path in (folder / "PedMasks").glob("*_mask.png"))
    return images if images == masks and len(images) == PENN_FUDAN_IMAGES else None


def _install_penn_fudan(root: Path, download: bool, loader: str = "get_detection_dataset") -> Path:
    folder, archive = root / PENN_FUDAN_FOLDER, root / PENN_FUDAN_ARCHIVE
    how = _how_to_get("'penn-fudan'", PENN_FUDAN_URL, "about 53 MB", archive,
                      f"{folder}/PNGImages and {folder}/PedMasks hold the {PENN_FUDAN_IMAGES} images and masks",
                      loader=loader)
    archive = _archive_on_disk(archive, PENN_FUDAN_URL, PENN_FUDAN_MD5, download, "Penn-Fudan", folder, how)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{PENN_FUDAN_FOLDER}.", suffix=".part"))
    try:
        extract_matching(archive, _PENN_FUDAN_MEMBER, staging, PENN_FUDAN_URL)
        if _penn_fudan_pairs(staging) is None:
            raise ValueError(f"{archive} does not hold {PENN_FUDAN_IMAGES} images each with its mask; it is not "
                             f"published Penn-Fudan archive. Delete it and fetch it again from {PENN_FUDAN_URL}.")
        os.chmod(staging, 0o755)  # mkdtemp makes it private; the data folder is not secret
        if folder.exists():  # an incomplete earlier copy: replace it with the checked one
            shutil.rmtree(folder)
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def penn_fudan_split(count: int, split: str, seed: int = 0) -> list[int]:
    """Indices (sorted) of one split of ``count`` images: a permutation seeded by ``seed``.

    The first ``int(0.15 * count)`` permuted indices (at least 1) are the test split, the next as
    many the validation split, the rest the training split.
    """
    if split not in PENN_FUDAN_SPLITS:
        raise ValueError(f"Penn-Fudan has no split {split!r}; its splits are: {', '.join(PENN_FUDAN_SPLITS)}.")
    held_out = max(1, int(PENN_FUDAN_HELD_OUT * count))
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed)).tolist()
    parts = {"test": order[:held_out], "val": order[held_out:2 * held_out], "train": order[2 * held_out:]}
    return sorted(parts[split])


class PennFudanPedestrians(Dataset):
    """Penn-Fudan pedestrians: street images, one class, boxes from the instance masks.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"`` (see :func:`penn_fudan_split`).
        root: the data root (default :func:`companion.data.data_root`); the images live in
            ``<root>/PennFudanPed/{PNGImages,PedMasks}``.
        download: fetch the archive when neither the folder nor the archive is there.
        seed: the seed of the split.

    A downloaded or hand-placed archive is checked against its MD5, then for the published
    structure; a folder extracted by hand is checked for the structure only (170 image/mask pairs).

    Items: ``(image float32 (3, H, W), {"boxes", "labels" (all 1), "masks" (K, H, W) bool})``.
    """

    classes = PENN_FUDAN_CLASSES

    def __init__(self, split: str = "train", root: str | Path | None = None, download: bool = False,
                 seed: int = 0) -> None:
        root = data_root(root)
        folder = root / PENN_FUDAN_FOLDER
        stems = _penn_fudan_pairs(folder)
        if stems is None:
            folder = _install_penn_fudan(root, download)
            stems = _penn_fudan_pairs(folder)
        self.folder = folder
        self.names = [stems[i] for i in penn_fudan_split(len(stems), split, seed)]

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        name = self.names[index]
        image = read_rgb(self.folder / "PNGImages" / f"{name}.png")  # (3, H, W)
        target = _target_from_label_image(_read_label_image(self.folder / "PedMasks" / f"{name}_mask.png"))
        return image, target


# ---------------------------------------------------------------------------------------------
# PASCAL VOC


def parse_voc_annotation(path: str | Path, classes: tuple[str, ...] = VOC_CLASSES) -> dict[str, torch.Tensor]:
    """One VOC XML annotation as a target dict.

    Args:
        path: the ``Annotations/<id>.xml`` file.
        classes: class names; an object's label is its name's index (``classes[0]`` is the background).

    Returns:
        ``boxes`` ``(K, 4)`` float32 (VOC's 1-based pixel indices minus one), ``labels`` ``(K,)`` int64,
        ``difficult`` ``(K,)`` bool (False where the file omits the flag).
    """
    root = ElementTree.parse(path).getroot()
    boxes, labels, difficult = [], [], []
    for element in root.iter("object"):
        name = (element.findtext("name") or "").strip()
        if name not in classes[1:]:
            raise ValueError(f"{path}: unknown class {name!r}; the classes are {', '.join(classes[1:])}.")
        box = element.find("bndbox")
        if box is None:
            raise ValueError(f"{path}: object {name!r} has no <bndbox>; the file is not a VOC annotation.")
        boxes.append([float(box.findtext(corner)) - 1.0 for corner in ("xmin", "ymin", "xmax", "ymax")])
        labels.append(classes.index(name))
        difficult.append((element.findtext("difficult") or "0").strip() == "1")
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),  # (K, 4)
            "labels": torch.tensor(labels, dtype=torch.int64),  # (K,)
            "difficult": torch.tensor(difficult, dtype=torch.bool)}  # (K,)


def _voc_member(year: str) -> re.Pattern[str]:
    return re.compile(rf"VOCdevkit/VOC{year}/(Annotations/[\w-]+\.xml|JPEGImages/[\w-]+\.jpg|"
                      rf"ImageSets/Main/(?:train|val|trainval|test)\.txt)")


def listed_ids(folder: Path, listing: str, files: tuple[str, ...]) -> list[str] | None:
    """The ids in ``folder / listing`` when every ``folder / file.format(id)`` exists, else None.

    ``files`` are templates such as ``"JPEGImages/{}.jpg"``; a missing list or file means the copy in
    ``folder`` is absent or incomplete.
    """
    path = folder / listing
    if not path.is_file():
        return None
    ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    complete = all((folder / file.format(image_id)).is_file() for image_id in ids for file in files)
    return ids if complete else None


def _voc_ids(folder: Path, split: str) -> list[str] | None:
    """The ids of ``split`` when its list and every listed file are in ``folder``, else None."""
    return listed_ids(folder, f"ImageSets/Main/{split}.txt", ("Annotations/{}.xml", "JPEGImages/{}.jpg"))


def _install_voc(root: Path, year: str, split: str, download: bool) -> Path:
    key = f"{year}-test" if split == "test" else year
    url, filename, md5, size = VOC_ARCHIVES[key]
    folder, archive = root / "VOCdevkit" / f"VOC{year}", root / filename
    how = _how_to_get(f"'voc{year}', {split!r}", url, size, archive,
                      f"{folder}/ImageSets/Main/{split}.txt, Annotations/ and JPEGImages/ exist")
    archive = _archive_on_disk(archive, url, md5, download, f"PASCAL VOC {year} ({split})", folder, how)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".voc{year}.", suffix=".part"))
    try:
        extract_matching(archive, _voc_member(year), staging, url)
        if _voc_ids(staging, split) is None:
            raise ValueError(f"{archive} lacks ImageSets/Main/{split}.txt or files it lists; it is not the "
                             f"published VOC {year} archive. Delete it and fetch it again from {url}.")
        # Merge into the torchvision layout (the 2007 test archive shares the folder with trainval).
        merge_into(staging, folder, last="Main")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


class PascalVOC(Dataset):
    """PASCAL VOC detection: 20 classes, labels ``1..20`` in the standard order, difficult flags kept.

    Args:
        year: ``"2007"`` or ``"2012"``.
        split: ``"train"``, ``"val"``, ``"trainval"``, or (2007 only) ``"test"``.
        root: the data root (default :func:`companion.data.data_root`); the files live in
            torchvision's layout, ``<root>/VOCdevkit/VOC<year>``.
        download: fetch the official archive when neither the files nor the archive are there.

    Items: ``(image float32 (3, H, W), {"boxes", "labels", "difficult"})``. Objects marked difficult
    are kept; VOC's evaluation ignores them (neither true nor false positives).
    """

    classes = VOC_CLASSES

    def __init__(self, year: str = "2007", split: str = "train", root: str | Path | None = None,
                 download: bool = False) -> None:
        if year not in VOC_SPLITS:
            raise ValueError(f"year must be one of {tuple(VOC_SPLITS)}, got {year!r}.")
        if split not in VOC_SPLITS[year]:
            raise ValueError(f"VOC {year} has no split {split!r}; its splits are: {', '.join(VOC_SPLITS[year])}.")
        root = data_root(root)
        folder = root / "VOCdevkit" / f"VOC{year}"
        ids = _voc_ids(folder, split)
        if ids is None:
            _install_voc(root, year, split, download)
            ids = _voc_ids(folder, split)
        self.folder, self.names = folder, ids

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        name = self.names[index]
        image = read_rgb(self.folder / "JPEGImages" / f"{name}.jpg")  # (3, H, W)
        return image, parse_voc_annotation(self.folder / "Annotations" / f"{name}.xml", self.classes)


# ---------------------------------------------------------------------------------------------
# One loader


def get_detection_dataset(name: str, split: str = "train", *, root: str | Path | None = None,
                          download: bool = False, **options) -> Dataset:
    """A detection dataset by name; items are ``(image float32 (3, H, W), target dict)``.

    Args:
        name: one of ``DETECTION_DATASETS``: ``"fashion-scenes"``, ``"penn-fudan"``, ``"voc2007"``,
            ``"voc2012"``.
        split: ``"train"``, ``"val"``, ``"test"`` (and ``"trainval"`` for VOC).
        root: the data root (default :func:`companion.data.data_root`).
        download: fetch a missing real dataset (verified); False makes a missing dataset an error
            that says how to get it. The synthetic scenes need only Fashion-MNIST.
        **options: passed to the dataset: ``FashionScenes``'s ``size``, ``seed``, ``classes``...;
            Penn-Fudan's ``seed`` (of the split).

    Raises:
        ValueError: unknown name or split.
        FileNotFoundError: the data is missing and could not be downloaded.
    """
    if name == "fashion-scenes":
        from companion.detection.scenes import FashionScenes  # lazy: it builds on Fashion-MNIST

        return FashionScenes(split=split, root=root, **options)
    if name == "penn-fudan":
        return PennFudanPedestrians(split, root=root, download=download, **options)
    if name in ("voc2007", "voc2012"):
        return PascalVOC(name.removeprefix("voc"), split, root=root, download=download, **options)
    raise ValueError(f"unknown detection dataset {name!r}; the names are: {', '.join(DETECTION_DATASETS)}.")
