"""A dataset over a folder of image files listed in a CSV, and a writer for such folders.

Real projects rarely start from tensors: they start from files and a spreadsheet of labels.
:class:`CsvImageDataset` reads that layout the careful way:

- everything that can be checked without decoding images is checked at construction (the CSV's
  columns, that every file exists inside the folder, that no file is listed twice, that every
  label is a known class), and the first bad row is named in the error together with the fix, so a
  typo fails at once rather than in the middle of the third epoch;
- images are decoded lazily, one per ``__getitem__``, so the dataset holds only file names and
  pickles cheaply to ``DataLoader`` worker processes;
- the order is the CSV's order and the class list is sorted, so index ``i`` and label ``k`` mean
  the same thing on every machine.

:func:`write_image_folder` writes tensors as PNG files plus the CSV, atomically: it builds the
folder next to its destination and renames it into place, so a crash never leaves half a dataset.

Taught in: book/02_cnn/09_training_recipe.ipynb.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

FILE_COLUMN = "file"
LABEL_COLUMN = "label"


class CsvImageDataset(Dataset):
    """Images stored as files under ``root``, listed with their class names in a CSV file.

    The CSV has a header row with (at least) a ``file`` column, a path relative to ``root``, and a
    ``label`` column, a class name. Example::

        file,label
        images/000000.png,Ankle boot
        images/000001.png,T-shirt/top

    Args:
        root: the folder the file paths are relative to.
        csv_file: the CSV, relative to ``root`` (or an absolute path).
        transform: optional function applied to each ``(C, H, W)`` float image (e.g. a
            ``torchvision.transforms.v2`` pipeline).
        classes: the class names, in label order. None: the sorted distinct labels of the CSV
            (numerically sorted when they are all integers). Passing them fixes the label numbering
            even when a split lacks some class.
        mode: PIL mode every image is converted to (``"L"`` grey, ``"RGB"``); None keeps the file's.
        file_column: name of the column holding file paths.
        label_column: name of the column holding class names.

    Attributes:
        classes: class names; label ``k`` is ``classes[k]``.
        files: absolute paths, in CSV order.
        targets: ``(N,)`` int64 labels, in CSV order.

    Raises:
        FileNotFoundError: ``root`` or the CSV does not exist.
        ValueError: a missing column, an empty CSV, or a bad row (missing file, a path outside
            ``root``, a duplicate file, an unknown label); the message names the row and the fix.
    """

    def __init__(self, root: str | Path, csv_file: str | Path = "labels.csv",
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 classes: Sequence[str] | None = None, *, mode: str | None = "L",
                 file_column: str = FILE_COLUMN, label_column: str = LABEL_COLUMN) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder {self.root} does not exist.")
        csv_path = Path(csv_file) if Path(csv_file).is_absolute() else self.root / csv_file
        if not csv_path.is_file():
            raise FileNotFoundError(f"label file {csv_path} does not exist; pass csv_file= the CSV that "
                                    "lists the images.")
        rows = _read_rows(csv_path, file_column, label_column)
        names = [label for _, _, label in rows]
        if classes is None:
            classes = _sorted_classes(names)
        self.classes = list(classes)
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes contains duplicates: {self.classes}.")
        index_of = {name: k for k, name in enumerate(self.classes)}
        files, targets, seen = [], [], {}
        for line, file, label in rows:
            where = f"{csv_path.name}, line {line} ({file!r}, {label!r})"
            path = (self.root / file).resolve()
            if not path.is_relative_to(self.root):
                raise ValueError(f"{where}: the path leaves the folder {self.root}; file paths must be "
                                 "relative to root and stay inside it.")
            if not path.is_file():
                raise ValueError(f"{where}: no such file {path}; fix the path in the CSV (it is "
                                 f"relative to {self.root}) or remove the row.")
            if path in seen:
                raise ValueError(f"{where}: the file is already listed on line {seen[path]}; remove "
                                 "the duplicate row.")
            if label not in index_of:
                raise ValueError(f"{where}: unknown label {label!r}; known classes are {self.classes}. "
                                 "Fix the label or pass classes= with every class name.")
            seen[path] = line
            files.append(path)
            targets.append(index_of[label])
        self.files = files
        self.targets = torch.tensor(targets, dtype=torch.long)  # (N,)
        self.transform = transform
        self.mode = mode

    def __len__(self) -> int:
        return len(self.files)

    def load_image(self, index: int) -> torch.Tensor:
        """The file at ``index`` decoded as a ``(C, H, W)`` uint8 tensor (no transform)."""
        from PIL import Image  # decoding needs Pillow; importing the package does not

        with Image.open(self.files[index]) as image:
            if self.mode is not None and image.mode != self.mode:
                image = image.convert(self.mode)
            array = np.array(image, dtype=np.uint8)  # (H, W) or (H, W, C)
        if array.ndim == 2:
            array = array[:, :, None]  # (H, W, 1)
        return torch.from_numpy(array).permute(2, 0, 1).contiguous()  # (C, H, W)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(image, label)``: a ``(C, H, W)`` float image in ``[0, 1]`` (then ``transform``) and a
        ``()`` int64 label."""
        image = self.load_image(index).float().div_(255.0)  # (C, H, W) in [0, 1]
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index]

    def __repr__(self) -> str:
        return f"CsvImageDataset(root={str(self.root)!r}, size={len(self)}, classes={len(self.classes)})"


def write_image_folder(images: torch.Tensor, labels: torch.Tensor, root: str | Path,
                       classes: Sequence[str], *, csv_name: str = "labels.csv",
                       overwrite: bool = False) -> Path:
    """Write images as PNG files under ``root/images/`` and a CSV of ``file,label`` rows.

    The folder is assembled in a temporary sibling and renamed into place, so ``root`` either does
    not exist or holds the complete dataset, never a part of it.

    Args:
        images: ``(N, H, W)``, ``(N, 1, H, W)`` or ``(N, 3, H, W)`` uint8 pixels.
        labels: ``(N,)`` integer class indices into ``classes``.
        root: the folder to create (its parent must exist).
        classes: class names; row ``i`` of the CSV gets ``classes[labels[i]]``.
        csv_name: the CSV's file name inside ``root``.
        overwrite: replace an existing non-empty ``root``; False makes that an error.

    Returns:
        The path of the CSV file.

    Raises:
        ValueError: wrong dtype or shapes, or a label outside ``[0, len(classes))``.
        FileExistsError: ``root`` exists, is not empty and ``overwrite`` is False.
    """
    if images.dtype != torch.uint8:
        raise ValueError(f"images must be uint8 pixels, got {images.dtype}; convert floats in [0, 1] "
                         "with (images * 255).round().to(torch.uint8).")
    if images.dim() == 3:
        images = images.unsqueeze(1)  # (N, H, W) -> (N, 1, H, W)
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (N, H, W) or (N, C, H, W) with C = 1 or 3, got shape "
                         f"{tuple(images.shape)}.")
    if labels.shape != images.shape[:1]:
        raise ValueError(f"{images.shape[0]} images but labels of shape {tuple(labels.shape)}; pass one "
                         "label per image.")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= len(classes)):
        raise ValueError(f"labels must be in [0, {len(classes)}) to index classes, got values from "
                         f"{int(labels.min())} to {int(labels.max())}.")
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise FileExistsError(f"{root} exists and is not a folder.")
    if root.is_dir() and any(root.iterdir()) and not overwrite:
        raise FileExistsError(f"{root} exists and is not empty; pass overwrite=True to replace it or "
                              "choose another folder.")
    from PIL import Image

    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        (staging / "images").mkdir()
        width = max(6, len(str(len(images) - 1)))
        pixels = images.permute(0, 2, 3, 1).cpu().numpy()  # (N, H, W, C)
        rows = []
        for i in range(len(pixels)):
            name = f"images/{i:0{width}d}.png"
            array = pixels[i, :, :, 0] if pixels.shape[3] == 1 else pixels[i]  # (H, W) or (H, W, 3)
            Image.fromarray(array).save(staging / name)
            rows.append((name, classes[int(labels[i])]))
        with open(staging / csv_name, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow([FILE_COLUMN, LABEL_COLUMN])
            writer.writerows(rows)
        if root.is_dir():
            old = Path(tempfile.mkdtemp(prefix=f".{root.name}.old.", dir=root.parent))
            os.replace(root, old / "data")  # move the old folder aside, then swap the new one in
            os.replace(staging, root)
            shutil.rmtree(old)
        else:
            os.replace(staging, root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return root / csv_name


def _read_rows(csv_path: Path, file_column: str, label_column: str) -> list[tuple[int, str, str]]:
    """``(line number, file, label)`` for every data row of the CSV."""
    with open(csv_path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        missing = [name for name in (file_column, label_column) if name not in columns]
        if missing:
            raise ValueError(f"{csv_path.name} has columns {columns} but needs {missing}; add a header "
                             f"row or pass file_column= / label_column=.")
        rows = [(reader.line_num, (row[file_column] or "").strip(), (row[label_column] or "").strip())
                for row in reader]
    if not rows:
        raise ValueError(f"{csv_path.name} lists no images.")
    return rows


def _sorted_classes(names: Sequence[str]) -> list[str]:
    distinct = set(names)
    if all(name.lstrip("-").isdigit() for name in distinct):
        return sorted(distinct, key=int)  # "2" before "10"
    return sorted(distinct)
