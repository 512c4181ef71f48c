"""What a SentenceTransformer takes besides text: `TextOnly` for a text model, `TextAndImages` for a CLIP model (its
text tower runs through the model's stages, images through lightembed.clip's ImageTower). The encoder asks its
modality instead of branching on the model kind."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from lightembed.clip import TEXT_OUTPUT, ImageTower, SplitInputs, image_inputs_in, split_inputs
from lightembed.errors import LightembedTypeError, LightembedValueError, NotSupportedError
from lightembed.inputs import as_text_list
from lightembed.tokenize import Batch

if TYPE_CHECKING:
    from lightembed.encoder import SentenceTransformer


class TextOnly:
    """A text model: texts in; an image among the inputs is an error naming it."""

    is_clip = False
    image_tower: ImageTower | None = None

    def split(self, inputs: Any, modalities: list[str]) -> SplitInputs:
        """The texts of an encode() call with their positions (no images)."""
        try:
            texts, single = as_text_list(inputs)
        except TypeError:
            images = image_inputs_in(inputs)
            if images:
                where = f"inputs[{images[0]}]" if isinstance(inputs, (list, tuple)) else "inputs"
                raise LightembedTypeError(
                    f"{where} is an image, but this model embeds text only (modalities {modalities}); images need "
                    "a CLIP model exported with lightembed-export."
                ) from None
            raise
        none = np.zeros(0, dtype=np.int64)
        return SplitInputs(texts, np.arange(len(texts), dtype=np.int64), [], none, single)

    def text_embeddings(self, model: SentenceTransformer, batch: Batch) -> np.ndarray | None:
        """A text batch's embeddings when this modality makes them itself; None: the model's pooling path."""
        return None

    def check_output_value(self, output_value: Any) -> None:
        """Refuse an output_value this modality cannot give (every one is fine for a text model)."""

    def image_batches(self, parts: SplitInputs, batch_size: int, single: bool) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(positions, image embeddings) per batch of the call's images: none for a text model."""
        return iter(())

    def refuse_save(self, what: str, model_dir: Any) -> None:
        """Refuse save()/push_to_hub() where the folder cannot be written back (a text model can)."""

    def reopened(self, model: SentenceTransformer) -> None:
        """Follow a switch of the text graph's file or providers (nothing to follow for a text model)."""

    def repr_fields(self, model: SentenceTransformer) -> dict[str, Any]:
        return {
            "pooling": model.config.pooling.modes,
            "max_seq_length": model.max_seq_length,
            "dim": model.get_sentence_embedding_dimension(),
        }


class TextAndImages(TextOnly):
    """A CLIP model: texts through its text tower's projected output, images through its vision tower, in one
    space; a mixed list is split by kind and put back in input order."""

    is_clip = True

    def __init__(self, model: SentenceTransformer) -> None:
        self.image_tower = self._open(model)

    @staticmethod
    def _open(model: SentenceTransformer) -> ImageTower:
        return ImageTower(model.model_dir, model.onnx_path, model._opened.options, model.manifest,
                          model.config.transformer_dir)  # fmt: skip

    def split(self, inputs: Any, modalities: list[str]) -> SplitInputs:
        return split_inputs(inputs)

    def text_embeddings(self, model: SentenceTransformer, batch: Batch) -> np.ndarray | None:
        return model._after_pooling(model._graph(batch.as_dict(), TEXT_OUTPUT))

    def check_output_value(self, output_value: Any) -> None:
        if output_value != "sentence_embedding":
            raise LightembedValueError(
                f"output_value={output_value!r}: a CLIP model's graphs give sentence embeddings only "
                "(output_value='sentence_embedding')."
            )

    def image_batches(self, parts: SplitInputs, batch_size: int, single: bool) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if not parts.images or self.image_tower is None:
            return iter(())
        return self.image_tower.batches(parts.images, parts.image_positions, batch_size, single=single)

    def refuse_save(self, what: str, model_dir: Any) -> None:
        raise NotSupportedError(
            f"{what} of a CLIP model is not supported: it writes one ONNX file and a CLIP folder needs both "
            f"towers; copy the exported folder {model_dir} (onnx/text_model*.onnx, onnx/vision_model*.onnx, "
            "lightembed.json and the configs) instead, or pass it as push_to_hub(local_model_path=...)."
        )

    def reopened(self, model: SentenceTransformer) -> None:
        self.image_tower = self._open(model)  # the vision graph follows the text graph's file and providers

    def repr_fields(self, model: SentenceTransformer) -> dict[str, Any]:
        return {"modalities": model.modalities, "max_seq_length": model.max_seq_length,
                "dim": model.get_sentence_embedding_dimension()}  # fmt: skip


def modality_of(model: SentenceTransformer) -> TextOnly:
    """The modality of a loaded SentenceTransformer, from its config (CLIP or not)."""
    return TextAndImages(model) if model.config.is_clip else TextOnly()
