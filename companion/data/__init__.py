"""Datasets by name, and the DataLoader the book uses."""

from companion.data.loaders import ArrayDataset, EpochSampler, make_loader
from companion.data.registry import data_root, dataset_info, find_offline, get_dataset, list_datasets

__all__ = ["ArrayDataset", "EpochSampler", "data_root", "dataset_info", "find_offline", "get_dataset",
           "list_datasets", "make_loader"]
