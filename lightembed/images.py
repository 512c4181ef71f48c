"""Image inputs for CLIP models: recognise and open them, and turn them into the pixel values the vision graph takes.

The preprocessing is transformers' CLIPImageProcessor (the one sentence-transformers runs), in Pillow and NumPy:
convert to RGB, resize so the shortest side is `size` (bicubic, by Pillow), center crop to `crop_size` (zero
padding where the image is smaller), scale by 1/255, subtract the mean and divide by the standard deviation, channels
first, float32. Settings come from the model's preprocessor_config.json.

Pillow is an optional extra (`pip install 'lightembed[images]'`), imported only when an image is used.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lightembed.config import read_json
from lightembed.errors import LightembedValueError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tiff", ".webp")
"""A string input ending in one of these (any case) that names an existing file is an image, as in
sentence-transformers."""
PREPROCESSOR_CONFIG = "preprocessor_config.json"
_INSTALL = "pip install 'lightembed[images]'"
_OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
_OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def pil() -> Any:
    """The PIL.Image module; ImportError naming the extra to install when Pillow is missing."""
    try:
        from PIL import Image
    except ImportError:
        raise ImportError(f"Encoding images needs Pillow: {_INSTALL}") from None
    return Image


def is_pil_image(value: Any) -> bool:
    """Whether `value` is a PIL image (False without importing Pillow when it was never imported)."""
    import sys

    module = sys.modules.get("PIL.Image")
    return module is not None and isinstance(value, module.Image)


def is_image_input(value: Any) -> bool:
    """Whether an encode() input is an image: a PIL image, a pathlib.Path, a `data:image/` URI, or a string ending
    in an image extension that names an existing file (sentence-transformers' rule; other strings are text)."""
    if is_pil_image(value) or isinstance(value, os.PathLike):
        return True
    if isinstance(value, str):
        return (
            value.startswith("data:image/")
            or is_image_url(value)
            or (value.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(value))
        )
    return False


def is_image_url(value: str) -> bool:
    """An http(s) URL of an image file, which sentence-transformers downloads and lightembed refuses."""
    return (
        value.startswith(("http://", "https://"))
        and " " not in value
        and (value.split("?", 1)[0].lower().endswith(IMAGE_EXTENSIONS))
    )


def open_image(item: Any, where: str) -> Any:
    """The RGB PIL image for an image input (`where` names it in errors, e.g. "inputs[3]").

    A path or data URI is opened, its EXIF orientation applied and converted to RGB (what transformers' load_image
    does for sentence-transformers); a PIL image is converted to RGB only. ValueError for a missing, unreadable or
    corrupt file, FileNotFoundError's message included."""
    image_module = pil()
    if is_pil_image(item):
        return item if item.mode == "RGB" else item.convert("RGB")
    if isinstance(item, str) and is_image_url(item):
        raise LightembedValueError(
            f"{where} is an image URL ({item[:80]}); lightembed does not download images: fetch it and pass the "
            "file's path or a PIL image."
        )
    if isinstance(item, str) and item.startswith("data:image/"):
        try:
            source: Any = io.BytesIO(base64.b64decode(item.split(",", 1)[1], validate=False))
        except (IndexError, binascii.Error, ValueError) as exc:
            raise LightembedValueError(f"{where} is a data:image/ URI whose base64 payload cannot be decoded: {exc}") from None
        what = "data URI"
    else:
        path = Path(item)
        if not path.is_file():
            raise LightembedValueError(f"{where}: no image file at {str(path)!r}.")
        source, what = path, f"file {str(path)!r}"
    try:
        with image_module.open(source) as opened:
            from PIL import ImageOps

            image = ImageOps.exif_transpose(opened)
            image = image.convert("RGB")  # also forces the decode, while the file is open
    except (OSError, SyntaxError, ValueError, image_module.DecompressionBombError) as exc:
        raise LightembedValueError(f"{where}: cannot read the image {what}: {type(exc).__name__}: {exc}") from None
    return image


@dataclass(frozen=True)
class ImageProcessor:
    """CLIPImageProcessor's settings (preprocessor_config.json) and its preprocessing in NumPy."""

    size: int | tuple[int, int] = 224
    """Shortest side after resizing (an int), or the exact (height, width)."""
    crop_size: tuple[int, int] = (224, 224)
    resample: int = 3  # PIL.Image.BICUBIC
    do_resize: bool = True
    do_center_crop: bool = True
    do_rescale: bool = True
    rescale_factor: float = 1 / 255
    do_normalize: bool = True
    image_mean: tuple[float, ...] = _OPENAI_MEAN
    image_std: tuple[float, ...] = _OPENAI_STD

    @classmethod
    def from_dir(cls, folder: Path) -> ImageProcessor:
        """The settings in `folder`/preprocessor_config.json (ValueError when it is missing or unusable)."""
        path = folder / PREPROCESSOR_CONFIG
        if not path.is_file():
            raise LightembedValueError(f"{path} is missing: a CLIP model folder needs it to preprocess images.")
        config = read_json(path)
        try:
            return cls(
                size=_size(config.get("size", 224)),
                crop_size=_crop_size(config.get("crop_size", 224)),
                resample=int(config.get("resample", 3)),
                do_resize=bool(config.get("do_resize", True)),
                do_center_crop=bool(config.get("do_center_crop", True)),
                do_rescale=bool(config.get("do_rescale", True)),
                rescale_factor=float(config.get("rescale_factor", 1 / 255)),
                do_normalize=bool(config.get("do_normalize", True)),
                image_mean=tuple(float(v) for v in _triple(config.get("image_mean", _OPENAI_MEAN))),
                image_std=tuple(float(v) for v in _triple(config.get("image_std", _OPENAI_STD))),
            )
        except (TypeError, ValueError, KeyError) as exc:
            raise LightembedValueError(f"{path} has settings lightembed cannot use: {exc}") from None

    def resize(self, image: Any) -> Any:
        """The RGB PIL image resized as CLIPImageProcessor resizes it (shortest side to `size`, aspect kept)."""
        if isinstance(self.size, tuple):
            height, width = self.size
        else:
            w, h = image.size
            short, long = (w, h) if w <= h else (h, w)
            new_short, new_long = self.size, int(self.size * long / short)
            height, width = (new_long, new_short) if w <= h else (new_short, new_long)
        return image.resize((width, height), resample=self.resample, reducing_gap=None)

    def center_crop(self, pixels: np.ndarray) -> np.ndarray:
        """The (H, W, C) array cropped to `crop_size` around its center, zero-padded where it is smaller."""
        crop_h, crop_w = self.crop_size
        height, width = pixels.shape[:2]
        if height < crop_h or width < crop_w:
            new_h, new_w = max(crop_h, height), max(crop_w, width)
            padded = np.zeros((new_h, new_w, pixels.shape[2]), dtype=pixels.dtype)
            top_pad, left_pad = math.ceil((new_h - height) / 2), math.ceil((new_w - width) / 2)
            padded[top_pad : top_pad + height, left_pad : left_pad + width] = pixels
            top, left = (height - crop_h) // 2 + top_pad, (width - crop_w) // 2 + left_pad
            return padded[max(0, top) : min(new_h, top + crop_h), max(0, left) : min(new_w, left + crop_w)]
        top, left = (height - crop_h) // 2, (width - crop_w) // 2
        return pixels[top : top + crop_h, left : left + crop_w]

    def __call__(self, images: list[Any]) -> np.ndarray:
        """Pixel values (n, 3, crop height, crop width), float32, for RGB PIL images."""
        rows = []
        for image in images:
            if self.do_resize:
                image = self.resize(image)
            pixels = np.asarray(image)
            if self.do_center_crop:
                pixels = self.center_crop(pixels)
            values = pixels.astype(np.float32)
            if self.do_rescale:
                values = (pixels.astype(np.float64) * self.rescale_factor).astype(np.float32)
            if self.do_normalize:
                mean = np.asarray(self.image_mean, dtype=np.float32)
                std = np.asarray(self.image_std, dtype=np.float32)
                values = (values - mean) / std
            rows.append(values.transpose(2, 0, 1))
        return np.ascontiguousarray(np.stack(rows), dtype=np.float32)


def _size(value: Any) -> int | tuple[int, int]:
    if isinstance(value, dict):
        if "shortest_edge" in value:
            return int(value["shortest_edge"])
        return int(value["height"]), int(value["width"])
    return int(value)


def _crop_size(value: Any) -> tuple[int, int]:
    if isinstance(value, dict):
        return int(value["height"]), int(value["width"])
    return int(value), int(value)


def _triple(value: Any) -> list[Any]:
    values = list(value) if isinstance(value, (list, tuple)) else [value] * 3
    if len(values) != 3:
        raise LightembedValueError(f"expected 3 channel values, got {value!r}")
    return values
