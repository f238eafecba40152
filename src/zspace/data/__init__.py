"""Datasets: loaders returning float32 images (N, H, W, C) in [0, 1] with labels; prepared caches."""

from zspace.data.cache import ShardedImages, read_cache
from zspace.data.datasets import (
    Dataset,
    SplitData,
    check_input_shape,
    check_task_data,
    find_local_dataset,
    load_dataset,
    train_validation_split,
)
from zspace.data.idx import read_idx
from zspace.data.tasks import inference_inputs, task_transform

__all__ = [
    "Dataset",
    "SplitData",
    "ShardedImages",
    "load_dataset",
    "read_cache",
    "find_local_dataset",
    "check_input_shape",
    "check_task_data",
    "train_validation_split",
    "read_idx",
    "task_transform",
    "inference_inputs",
]
