import csv

import pytest
import torch
from torch.utils.data import DataLoader

from companion.data.image_folder import CsvImageDataset, write_image_folder

CLASSES = ["boot", "coat", "shirt"]


@pytest.fixture
def images():
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (12, 1, 8, 6), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 3, (12,), generator=generator)
    return pixels, labels


def _rewrite_csv(path, rows):
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows([["file", "label"], *rows])


def test_round_trip_is_exact(tmp_path, images):
    pixels, labels = images
    csv_path = write_image_folder(pixels, labels, tmp_path / "data", CLASSES)
    assert csv_path == tmp_path / "data" / "labels.csv"
    dataset = CsvImageDataset(tmp_path / "data")
    assert len(dataset) == 12 and dataset.classes == CLASSES
    assert torch.equal(dataset.targets, labels)
    for i in range(12):
        assert torch.equal(dataset.load_image(i), pixels[i])
        image, label = dataset[i]
        assert image.dtype == torch.float32 and image.shape == (1, 8, 6)
        torch.testing.assert_close(image, pixels[i].float() / 255)
        assert int(label) == int(labels[i])


def test_rgb_and_transform_and_loader(tmp_path):
    pixels = torch.randint(0, 256, (4, 3, 5, 5), dtype=torch.uint8)
    write_image_folder(pixels, torch.tensor([0, 1, 2, 0]), tmp_path / "rgb", CLASSES)
    dataset = CsvImageDataset(tmp_path / "rgb", mode="RGB", transform=lambda x: x * 2)
    assert torch.equal(dataset.load_image(3), pixels[3])
    torch.testing.assert_close(dataset[1][0], pixels[1].float() / 255 * 2)
    images, labels = next(iter(DataLoader(dataset, batch_size=4)))
    assert images.shape == (4, 3, 5, 5) and labels.tolist() == [0, 1, 2, 0]


def test_classes_fix_numbering_and_order_is_the_csv_order(tmp_path, images):
    pixels, _ = images
    write_image_folder(pixels[:3], torch.tensor([1, 1, 2]), tmp_path / "d", CLASSES)
    dataset = CsvImageDataset(tmp_path / "d")
    assert dataset.classes == ["coat", "shirt"] and dataset.targets.tolist() == [0, 0, 1]
    dataset = CsvImageDataset(tmp_path / "d", classes=CLASSES)
    assert dataset.targets.tolist() == [1, 1, 2]
    assert [path.name for path in dataset.files] == ["000000.png", "000001.png", "000002.png"]


def test_integer_labels_sort_numerically(tmp_path, images):
    pixels, _ = images
    names = [str(k) for k in range(11)]
    write_image_folder(pixels[:3], torch.tensor([10, 2, 1]), tmp_path / "d", names)
    assert CsvImageDataset(tmp_path / "d").classes == ["1", "2", "10"]


def test_bad_rows_name_the_row_and_the_fix(tmp_path, images):
    pixels, labels = images
    csv_path = write_image_folder(pixels[:3], labels[:3], tmp_path / "d", CLASSES)
    good = ["images/000000.png", "boot"]
    _rewrite_csv(csv_path, [good, ["images/missing.png", "boot"]])
    with pytest.raises(ValueError, match=r"line 3 .*missing\.png.*no such file"):
        CsvImageDataset(tmp_path / "d")
    _rewrite_csv(csv_path, [good, ["images/000001.png", "sandal"]])
    with pytest.raises(ValueError, match=r"line 3 .*unknown label 'sandal'.*classes="):
        CsvImageDataset(tmp_path / "d", classes=CLASSES)
    _rewrite_csv(csv_path, [good, good])
    with pytest.raises(ValueError, match=r"line 3 .*already listed on line 2"):
        CsvImageDataset(tmp_path / "d")
    (tmp_path / "outside.png").write_bytes(b"")
    _rewrite_csv(csv_path, [good, ["../outside.png", "boot"]])
    with pytest.raises(ValueError, match="leaves the folder"):
        CsvImageDataset(tmp_path / "d")
    csv_path.write_text("path,class\nimages/000000.png,boot\n")
    with pytest.raises(ValueError, match=r"needs \['file', 'label'\]"):
        CsvImageDataset(tmp_path / "d")
    csv_path.write_text("file,label\n")
    with pytest.raises(ValueError, match="lists no images"):
        CsvImageDataset(tmp_path / "d")
    with pytest.raises(FileNotFoundError, match="csv_file="):
        CsvImageDataset(tmp_path / "d", csv_file="other.csv")


def test_writer_refuses_to_overwrite_unless_asked(tmp_path, images):
    pixels, labels = images
    root = tmp_path / "d"
    root.mkdir()  # an existing empty folder is fine
    write_image_folder(pixels[:2], labels[:2], root, CLASSES)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_image_folder(pixels[:5], labels[:5], root, CLASSES)
    assert len(CsvImageDataset(root)) == 2  # untouched
    write_image_folder(pixels[:5], labels[:5], root, CLASSES, overwrite=True)
    assert len(CsvImageDataset(root)) == 5
    assert sorted(path.name for path in tmp_path.iterdir()) == ["d"]  # no staging folders left


def test_writer_bad_input(tmp_path, images):
    pixels, labels = images
    with pytest.raises(ValueError, match="uint8"):
        write_image_folder(pixels.float(), labels, tmp_path / "a", CLASSES)
    with pytest.raises(ValueError, match="one label per image"):
        write_image_folder(pixels, labels[:3], tmp_path / "a", CLASSES)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\)"):
        write_image_folder(pixels, labels, tmp_path / "a", CLASSES[:2])
    with pytest.raises(ValueError, match="C = 1 or 3"):
        write_image_folder(pixels.expand(12, 2, 8, 6), labels, tmp_path / "a", CLASSES)
    assert not (tmp_path / "a").exists()
