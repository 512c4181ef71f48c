"""CLIP models (clip-ViT-B-32 and the like): texts and images in one space, from two ONNX graphs.

The exporter writes the text tower as `onnx/text_model.onnx` (input_ids, attention_mask -> text_embeds) and the
vision tower beside it as `onnx/vision_model.onnx` (pixel_values -> image_embeds); an optimized pair is
`onnx/text_model_O2.onnx` and `onnx/vision_model_O2.onnx`. The SentenceTransformer runs the text tower through the
usual stages (tokenize_inputs, plan, pad, forward) and images through `ImageTower`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from lightembed.errors import LightembedTypeError, LightembedValueError
from lightembed.graphs import GraphOptions, open_graph
from lightembed.images import ImageProcessor, is_image_input, is_pil_image, open_image
from lightembed.manifest import Manifest

TEXT_MODEL = "onnx/text_model.onnx"
VISION_MODEL = "onnx/vision_model.onnx"
TEXT_OUTPUT = "text_embeds"
IMAGE_OUTPUT = "image_embeds"
MODULE_KIND = "CLIPModel"
"""modules.json's class name for sentence-transformers' CLIP module (old and new type paths end in it)."""


def vision_file_name(text_file: str) -> str | None:
    """The vision tower's relative path for a text tower's (`onnx/text_model_O2.onnx` -> `onnx/vision_model_O2.onnx`);
    None when the name is not a text tower's."""
    folder, _, name = text_file.replace("\\", "/").rpartition("/")
    if not name.startswith("text_model"):
        return None
    partner = "vision_model" + name[len("text_model") :]
    return f"{folder}/{partner}" if folder else partner


@dataclass
class SplitInputs:
    """encode()'s inputs sorted by kind, with each one's position in the caller's list."""

    texts: list[str]
    text_positions: np.ndarray
    images: list[Any]
    image_positions: np.ndarray
    single: bool

    @property
    def count(self) -> int:
        return len(self.texts) + len(self.images)


def split_inputs(inputs: Any, name: str = "inputs") -> SplitInputs:
    """Texts and images of one encode() call, order kept. An image is a PIL image, a pathlib.Path, a data:image/
    URI or a string ending in an image extension that names an existing file (sentence-transformers' rule); any
    other string is text. TypeError naming the position for anything else, ValueError for a missing image file."""
    if isinstance(inputs, np.ndarray) and inputs.ndim == 0:
        inputs = inputs.item()  # a 0-d array holds one value: one text, not its characters
    single = isinstance(inputs, (str, Path)) or is_pil_image(inputs)
    items = [inputs] if single else _as_list(inputs, name)
    texts: list[str] = []
    images: list[Any] = []
    text_pos: list[int] = []
    image_pos: list[int] = []
    for i, item in enumerate(items):
        where = name if single else f"{name}[{i}]"
        if is_image_input(item):
            if not is_pil_image(item) and not isinstance(item, str) and not Path(item).is_file():
                raise LightembedValueError(f"{where}: no image file at {str(item)!r}.")
            images.append(item)
            image_pos.append(i)
        elif isinstance(item, str):
            texts.append(item)
            text_pos.append(i)
        else:
            kind = "None" if item is None else type(item).__name__
            raise LightembedTypeError(
                f"{where} must be a string (text), a PIL image or a pathlib.Path to an image file, got {kind}."
            )
    return SplitInputs(texts, np.asarray(text_pos, dtype=np.int64), images, np.asarray(image_pos, dtype=np.int64),
                       single)  # fmt: skip


def _as_list(inputs: Any, name: str) -> list[Any]:
    if inputs is None or isinstance(inputs, (bytes, bytearray, dict)):
        kind = "None" if inputs is None else type(inputs).__name__
        raise LightembedTypeError(f"{name} must be a string, an image or a list of them, got {kind}.")
    if isinstance(inputs, np.ndarray):
        inputs = inputs.tolist() if inputs.ndim else [inputs.item()]
    try:
        return list(inputs)
    except TypeError:
        raise LightembedTypeError(f"{name} must be a string, an image or a list of them, got {type(inputs).__name__}.") from None


def image_inputs_in(inputs: Any) -> list[int]:
    """Positions of image inputs (PIL images, pathlib.Path) in what a text-only model was given: for its error."""
    if is_pil_image(inputs) or isinstance(inputs, Path):
        return [0]
    if isinstance(inputs, (list, tuple)):
        return [i for i, item in enumerate(inputs) if is_pil_image(item) or isinstance(item, Path)]
    return []


class ImageTower:
    """The vision graph of a CLIP folder and the preprocessing in front of it: images in, image embeddings out."""

    def __init__(self, model_dir: Path, text_path: Path, options: GraphOptions, manifest: Manifest | None,
                 processor_dir: Path) -> None:  # fmt: skip
        """Open the vision tower paired with the text tower `text_path`, with the text tower's options (on
        onnxruntime: OpenVINO runs text towers only)."""
        relative = text_path.resolve().relative_to(model_dir.resolve()).as_posix()
        partner = vision_file_name(relative)
        if partner is None:
            raise LightembedValueError(
                f"{relative} is not a CLIP text tower's file ({TEXT_MODEL} or onnx/text_model_<level>.onnx), so "
                "there is no vision tower to pair it with; choose a text_model file with file_name=..."
            )
        self.path = model_dir / partner
        if not self.path.is_file():
            raise FileNotFoundError(f"{model_dir} has the CLIP text tower {relative} but no vision tower {partner}.")
        vision = replace(options, backend="onnx", modality="image", preferred_outputs=(IMAGE_OUTPUT,), optimize=True)
        self.opened = open_graph(model_dir, self.path, vision, manifest)
        self.verified = self.opened.verified
        self.preoptimized_file: Path | None = self.opened.run_path if self.opened.preoptimized else None
        """The tower's pre-optimized CPU copy, when one runs."""
        self.processor = ImageProcessor.from_dir(processor_dir)

    def batches(self, images: Sequence[Any], positions: np.ndarray, batch_size: int, name: str = "inputs",
                single: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:  # fmt: skip
        """(positions, image embeddings) per batch of at most `batch_size` images; each image is opened and
        preprocessed when its batch comes, and one that cannot be read is a ValueError naming its position."""
        for start in range(0, len(images), batch_size):
            chunk = range(start, min(start + batch_size, len(images)))
            opened = [open_image(images[k], name if single else f"{name}[{positions[k]}]") for k in chunk]
            yield positions[start : chunk.stop], self.embed(self.processor(opened))

    def embed(self, pixel_values: np.ndarray) -> np.ndarray:
        """Image embeddings (n, dim) of preprocessed pixel values (n, 3, H, W)."""
        return self.opened.graph({"pixel_values": pixel_values})
