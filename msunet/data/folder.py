"""A folder of images and a folder of masks matched by file stem (any of png/jpg/tif)."""

from __future__ import annotations

import pathlib

import ml_collections

from msunet.data.files import IMAGE_SUFFIXES, BadSampleError, Entry, FileSource


def _images(folder: pathlib.Path) -> list[pathlib.Path]:
    return sorted(path for path in folder.iterdir()
                  if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES)


class ImageFolder(FileSource):
    """`images_dir/<stem>.<ext>` with its mask `masks_dir/<stem>.<ext>` (filled or outline).

    An image without a mask is a bad sample: a lesion-free image needs an all-zero mask file,
    so a forgotten mask is never read as "no lesion". Each image is its own case for splits.
    """

    def __init__(self, images_dir: str | pathlib.Path, masks_dir: str | pathlib.Path,
                 on_bad_sample: str = "error") -> None:
        self.images_dir = pathlib.Path(images_dir).expanduser()
        self.masks_dir = pathlib.Path(masks_dir).expanduser()
        for name, folder in (("images", self.images_dir), ("masks", self.masks_dir)):
            if not str(folder) or not folder.is_dir():
                raise FileNotFoundError(f"{name} folder {str(folder)!r} is not a directory")
        masks: dict[str, pathlib.Path] = {}
        for path in _images(self.masks_dir):
            if path.stem in masks:
                raise ValueError(f"two masks with the stem {path.stem!r}: {masks[path.stem]} "
                                 f"and {path}")
            masks[path.stem] = path
        images = _images(self.images_dir)
        if not images:
            raise FileNotFoundError(f"no {'/'.join(IMAGE_SUFFIXES)} images in {self.images_dir}")
        entries = [Entry(image, (masks[image.stem],) if image.stem in masks else (), image.stem)
                   for image in images]
        problems = [BadSampleError(image, f"no mask named {image.stem}.* in {self.masks_dir}")
                    for image in images if image.stem not in masks]
        super().__init__(entries, problems, f"image folder {self.images_dir}", on_bad_sample)

    @classmethod
    def from_config(cls, data: ml_collections.ConfigDict) -> ImageFolder:
        """Images in `data.root`, masks in `data.masks_dir`."""
        if not data.root or not data.masks_dir:
            raise ValueError("data.source='folder' needs data.root (the images) and "
                             "data.masks_dir (the masks)")
        return cls(data.root, data.masks_dir, data.on_bad_sample)
