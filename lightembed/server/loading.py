"""Which model class a folder is, and loading the models `lightembed serve` is given."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Kind = Literal["embed", "rerank", "sparse", "multi_vector"]
KIND_CLASS: dict[Kind, str] = {
    "embed": "SentenceTransformer", "rerank": "CrossEncoder", "sparse": "SparseEncoder",
    "multi_vector": "MultiVectorEncoder",
}
CLASS_KIND: dict[str, Kind] = {name: kind for kind, name in KIND_CLASS.items()}


@dataclass(frozen=True)
class ModelSpec:
    """One `MODEL[=NAME]` argument: where the model is and the name it is served under."""

    source: str
    name: str

    @classmethod
    def parse(cls, text: str) -> "ModelSpec":
        """`folder-or-hub-id` or `folder-or-hub-id=served-name`; the served name defaults to the last path part
        (the folder's name for a path to an .onnx file in it)."""
        source, sep, name = text.rpartition("=")
        if not sep or not name or "/" in name or not source:
            source = text
            name = Path(split_onnx_path(text)[0].rstrip("/")).name or text
        return cls(source, name)


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def model_kind(folder: str | Path, onnx_file: str | Path | None = None) -> Kind:
    """"embed" (SentenceTransformer), "rerank" (CrossEncoder), "sparse" (SparseEncoder) or "multi_vector"
    (MultiVectorEncoder) for a model folder.

    The class the exporter recorded in lightembed.json decides. For a folder without one, in order:
    sentence_bert_config.json's transformer_task (fill-mask: sparse, sequence-classification:
    rerank); modules.json (a SpladePooling or MLMTransformer module: sparse; a MultiVectorMask module:
    multi_vector; a Pooling module: embed);
    config_sentence_transformers.json's model_type; config.json's architectures (...ForSequenceClassification:
    rerank, ...ForMaskedLM: sparse); then the ONNX graph's output (2-D logits: rerank, `logits` 3-D: sparse,
    else embed).
    """
    from lightembed import manifest as manifests

    folder = Path(folder)
    recorded = manifests.read(folder, strict=False)
    if recorded is not None and recorded.model_class in CLASS_KIND:
        return CLASS_KIND[recorded.model_class]
    task = _json(folder / "sentence_bert_config.json").get("transformer_task")
    if task == "fill-mask":
        return "sparse"
    if task == "sequence-classification":
        return "rerank"
    modules = folder / "modules.json"
    if modules.is_file():
        try:
            types = [str(m.get("type", "")) for m in json.loads(modules.read_text(encoding="utf-8"))]
        except (OSError, ValueError, AttributeError):
            types = []
        if any(t.endswith(("SpladePooling", "MLMTransformer")) for t in types):
            return "sparse"
        if any(t.endswith("MultiVectorMask") for t in types):
            return "multi_vector"
        if any(t.endswith(".Pooling") or t == "Pooling" for t in types):
            return "embed"
    model_type = str(_json(folder / "config_sentence_transformers.json").get("model_type", ""))
    if model_type in CLASS_KIND:
        return CLASS_KIND[model_type]
    architectures = _json(folder / "config.json").get("architectures") or []
    if any(str(a).endswith("ForSequenceClassification") for a in architectures):
        return "rerank"
    if any(str(a).endswith("ForMaskedLM") for a in architectures):
        return "sparse"
    if onnx_file is not None:
        from lightembed.graphs.onnxruntime import output_shapes

        shapes = output_shapes(Path(onnx_file))
        rank = len(shapes["logits"] or ()) if "logits" in shapes else None
        if rank == 3:
            return "sparse"
        if rank == 2:
            return "rerank"
    return "embed"


def other_faces(kind: Kind, model: Any) -> list[tuple[Kind, Any]]:
    """The other kinds the file of a loaded model also serves, each as the class that serves it, sharing the
    model's open graph: a BGE-M3 export (lightembed.bge_m3) is an embedding model and a sparse one."""
    from lightembed import bge_m3

    sparse = bge_m3.sparse_encoder_of(model) if kind == "embed" else None
    return [] if sparse is None else [("sparse", sparse)]


def split_onnx_path(source: str) -> tuple[str, str | None]:
    """(model folder or Hub id, ONNX file inside it or None): a path to an .onnx file picks that file of the
    folder it is in (the folder above when the file sits in `onnx/`), e.g. `work/minilm/onnx/model_O3.onnx`."""
    path = Path(source)
    if path.suffix != ".onnx" or not path.is_file():
        return source, None
    folder = path.parent.parent if path.parent.name == "onnx" else path.parent
    return str(folder), path.relative_to(folder).as_posix()


def load_model(spec: ModelSpec, *, threads: int | None = None, device: str | None = None) -> tuple[Kind, Any]:
    """(kind, loaded model) for one served model, loaded as the class its folder is."""
    from lightembed.hub import resolve

    source, file_name = split_onnx_path(spec.source)
    folder, onnx_file = resolve(source, file_name=file_name)
    kind = model_kind(folder, onnx_file)
    options: dict[str, Any] = {"device": device, "threads": threads, "file_name": file_name}
    if kind == "rerank":
        from lightembed.cross_encoder import CrossEncoder

        return kind, CrossEncoder(str(folder), **options)
    if kind == "sparse":
        from lightembed.sparse_encoder import SparseEncoder

        return kind, SparseEncoder(str(folder), **options)
    if kind == "multi_vector":
        from lightembed.multi_vector_encoder import MultiVectorEncoder

        return kind, MultiVectorEncoder(str(folder), **options)
    from lightembed.encoder import SentenceTransformer

    return kind, SentenceTransformer(str(folder), **options)
