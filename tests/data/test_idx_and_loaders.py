import struct

import numpy as np
import pytest
import torch

from companion.data import ArrayDataset, EpochSampler, make_loader
from companion.data.idx import read_idx_bytes


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_idx_round_trip():
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(read_idx_bytes(_idx(array)), array)


def test_truncated_and_foreign_idx_are_clear_errors():
    data = _idx(np.zeros((3, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="truncated"):
        read_idx_bytes(data[:-1], "x.idx")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx_bytes(b"PK\x03\x04 zip bytes", "x.idx")


def test_array_dataset_batches_without_collation():
    images = torch.randint(0, 256, (10, 1, 4, 4), dtype=torch.uint8)
    dataset = ArrayDataset(images, torch.arange(10), classes=list("abcdefghij"))
    loader = make_loader(dataset, batch_size=4)
    batches = list(loader)
    assert [b[0].shape[0] for b in batches] == [4, 4, 2]
    first_images, first_labels = batches[0]
    assert first_images.dtype == torch.float32 and first_images.shape == (4, 1, 4, 4)
    assert torch.equal(first_images, images[:4].float() / 255)
    assert first_labels.tolist() == [0, 1, 2, 3]
    image, label = dataset[3]
    assert image.shape == (1, 4, 4) and int(label) == 3


def test_shuffle_depends_on_seed_and_epoch_only():
    a, b = EpochSampler(50, shuffle=True, seed=7), EpochSampler(50, shuffle=True, seed=7)
    a.set_epoch(3), b.set_epoch(3)
    assert list(a) == list(b)
    b.set_epoch(4)
    assert list(a) != list(b)
    assert sorted(a) == list(range(50))


def test_mismatched_images_and_labels():
    with pytest.raises(ValueError, match="3 images but 2 labels"):
        ArrayDataset(torch.zeros(3, 1, 2, 2), torch.zeros(2))


def test_subset_is_seeded():
    dataset = ArrayDataset(torch.arange(100).reshape(100, 1, 1, 1).to(torch.uint8), torch.arange(100))
    assert torch.equal(dataset.subset(10, seed=1).labels, dataset.subset(10, seed=1).labels)
    assert len(dataset.subset(None)) == 100 and len(dataset.subset(10)) == 10


def test_subsets_batch_whether_or_not_the_wrapped_dataset_batches_itself():
    """A Subset of a batching dataset keeps its batches; a Subset of item-by-item datasets is collated."""
    data = ArrayDataset(torch.arange(24.0).reshape(6, 1, 2, 2), torch.arange(6))

    class OneByOne(torch.utils.data.Dataset):  # no __getitems__
        def __len__(self):
            return 6

        def __getitem__(self, index):
            return data.images[index], data.labels[index]

    for dataset in (data, OneByOne(), torch.utils.data.ConcatDataset([OneByOne()])):
        for wrapped in (dataset, torch.utils.data.Subset(dataset, [5, 1, 3, 0]),
                        torch.utils.data.Subset(torch.utils.data.Subset(dataset, [5, 1, 3, 0, 2]), [0, 1, 2, 3])):
            images, labels = next(iter(make_loader(wrapped, batch_size=4)))
            expected = [5, 1, 3, 0] if isinstance(wrapped, torch.utils.data.Subset) else [0, 1, 2, 3]
            assert images.shape == (4, 1, 2, 2) and labels.tolist() == expected
            assert torch.equal(images, data.images[expected])
