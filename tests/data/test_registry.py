import pytest

from companion.data import dataset_info, find_offline, get_dataset, list_datasets


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(ValueError) as info:
        get_dataset("cifar-100")
    assert "fashion-mnist" in str(info.value) and "synthetic-xor" in str(info.value)


def test_unknown_split():
    with pytest.raises(ValueError, match="no split 'validation'"):
        get_dataset("synthetic-xor", "validation")


def test_synthetic_datasets_say_so_in_their_names():
    for name in list_datasets():
        assert dataset_info(name).synthetic == name.startswith("synthetic-")
    dataset = get_dataset("synthetic-xor", size=64, seed=3)
    assert dataset.name == "synthetic-xor/train" and len(dataset) == 64
    points, labels = dataset.images, dataset.labels
    corners = points.round().clamp(0, 1).long()
    assert (labels == (corners[:, 0] ^ corners[:, 1])).float().mean() > 0.9
    test = get_dataset("synthetic-xor", "test", size=64, seed=3)
    assert not (test.images == points).all()  # a different draw from the training split
    assert find_offline("synthetic-xor") == "generated"


def test_real_dataset_takes_no_generator_options():
    with pytest.raises(TypeError, match="takes no options"):
        get_dataset("fashion-mnist", size=10)


def test_cifar10_is_registered_and_missing_data_is_a_clear_error(tmp_path):
    assert "cifar10" in list_datasets()
    assert find_offline("cifar10", root=tmp_path) is None
    with pytest.raises(FileNotFoundError, match="cifar-10-python.tar.gz"):
        get_dataset("cifar10", "train", root=tmp_path, download=False)
