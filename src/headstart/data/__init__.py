"""The data layer: decoding files, image sets from folders/CSV/built-ins, splits, torch views.

Everything a later stage needs about images comes through here, so odd files, bad files and
awkward folder layouts are dealt with once, with messages that say how to fix them.
"""

from headstart.data.decode import IMAGE_EXTENSIONS, decode_file, load_image, to_square_uint8
from headstart.data.imageset import UNLABELED, ImageSet, check_trainable
from headstart.data.sources import (
    BUILTIN_DATASETS,
    ignored_message,
    load_csv,
    load_folder,
    load_unlabeled,
    resolve,
)
from headstart.data.splits import few_shot, stratified_split
from headstart.data.torchdata import ImageDataset, preload

__all__ = [
    "BUILTIN_DATASETS",
    "IMAGE_EXTENSIONS",
    "UNLABELED",
    "ImageDataset",
    "ImageSet",
    "check_trainable",
    "decode_file",
    "few_shot",
    "ignored_message",
    "load_csv",
    "load_folder",
    "load_image",
    "load_unlabeled",
    "preload",
    "resolve",
    "stratified_split",
    "to_square_uint8",
]
