"""The data stage: image classification sets loaded into memory, with their identity."""

from robench.data.datasets import DataIdentity, ImageData, check_same_classes, load_dataset

__all__ = ["DataIdentity", "ImageData", "check_same_classes", "load_dataset"]
