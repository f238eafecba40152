"""Datasets: loaders returning float32 images (N, H, W, C) in [0, 1] with labels."""

from zspace.data.datasets import (
    Dataset,
    check_input_shape,
    find_local_dataset,
    load_dataset,
    train_validation_split,
)
from zspace.data.idx import read_idx

__all__ = [
    "Dataset",
    "load_dataset",
    "find_local_dataset",
    "check_input_shape",
    "train_validation_split",
    "read_idx",
]
