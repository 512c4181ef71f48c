"""Reads a sentence-transformers model folder into a description of its pipeline."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from lightembed.modules import Dense, Normalize
from lightembed.pooling import PoolingConfig

_LARGE = 10**8


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`, {} if the file does not exist, ValueError naming the file if it is broken."""
    if not path.is_file():
        return {}
    try:
        with path.open(encoding="utf-8") as handle:
            data = json.load(handle)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object.")
    return data


@dataclass
class ModelConfig:
    """What lightembed needs to run a sentence-transformers model apart from the ONNX graph itself."""

    folder: Path
    transformer_dir: Path
    max_seq_length: int | None
    do_lower_case: bool = False
    pooling: PoolingConfig = field(default_factory=PoolingConfig)
    post: list[Callable[[np.ndarray], np.ndarray]] = field(default_factory=list)
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    similarity_fn_name: str | None = None
    module_types: list[str] = field(default_factory=list)

    @property
    def has_normalize(self) -> bool:
        return any(isinstance(m, Normalize) for m in self.post)

    def output_dimension(self, hidden_size: int | None) -> int | None:
        """Dimension of the final sentence embedding given the transformer's hidden size."""
        dim = hidden_size if hidden_size is not None else self.pooling.embedding_dimension
        if dim is None:
            return None
        dim *= len(self.pooling.modes)
        for module in self.post:
            if isinstance(module, Dense):
                dim = module.out_features
        return dim


def _module_kind(type_name: str) -> str:
    # Old ('sentence_transformers.models.Pooling') and new ('sentence_transformers.sentence_transformer.modules
    # .pooling.Pooling', 'sentence_transformers.base.modules.transformer.Transformer') names end in the class.
    return type_name.rsplit(".", 1)[-1]


def max_seq_length_from(transformer_dir: Path, st_config: dict[str, Any]) -> int | None:
    if st_config.get("max_seq_length") is not None:
        return int(st_config["max_seq_length"])
    tok_max = read_json(transformer_dir / "tokenizer_config.json").get("model_max_length")
    pos_max = read_json(transformer_dir / "config.json").get("max_position_embeddings")
    candidates = [int(v) for v in (tok_max, pos_max) if isinstance(v, (int, float)) and 0 < v < _LARGE]
    return min(candidates) if candidates else None


def read_modules(folder: Path) -> list[tuple[str, Path, str]] | None:
    """(class name, module folder, full type name) per modules.json entry in idx order; None without one."""
    modules = folder / "modules.json"
    if not modules.is_file():
        return None
    try:
        entries = json.loads(modules.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{modules} is not valid JSON: {exc}") from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError(f"{modules} must hold a list of module objects.")
    return [
        (_module_kind(str(e.get("type", ""))), folder / e.get("path", ""), str(e.get("type")))
        for e in sorted(entries, key=lambda e: e.get("idx", 0))
    ]


def read_model_settings(folder: Path) -> tuple[dict[str, str], str | None, str | None]:
    """(prompts, default_prompt_name, similarity_fn_name) from config_sentence_transformers.json."""
    path = folder / "config_sentence_transformers.json"
    model_config = read_json(path)
    prompts = model_config.get("prompts") or {}
    if not isinstance(prompts, dict) or not all(isinstance(v, str) for v in prompts.values()):
        raise ValueError(f"'prompts' in {path} must be an object of strings.")
    return dict(prompts), model_config.get("default_prompt_name"), model_config.get("similarity_fn_name")


def load_config(folder: str | Path) -> ModelConfig:
    """Read modules.json and the module configs; a folder with no modules.json gets mean pooling."""
    folder = Path(folder)
    modules = folder / "modules.json"
    entries = read_modules(folder) or [("Transformer", folder, "Transformer")]
    transformer_dir: Path | None = None
    pooling: PoolingConfig | None = None
    post: list[Callable[[np.ndarray], np.ndarray]] = []
    kinds: list[str] = []
    for kind, path, type_name in entries:
        kinds.append(kind)
        if kind == "Transformer":
            if transformer_dir is not None:
                raise ValueError(f"{modules} lists more than one Transformer module.")
            transformer_dir = path
        elif kind == "Pooling":
            pooling = PoolingConfig.from_dict(read_json(path / "config.json"))
        elif kind == "Normalize":
            post.append(Normalize())  # its folder may be missing: it has no parameters
        elif kind == "Dense":
            post.append(Dense.from_dir(path))
        else:
            raise ValueError(
                f"Module type {type_name!r} in {modules} is not supported by lightembed "
                "(supported: Transformer, Pooling, Dense, Normalize)."
            )
    if transformer_dir is None:
        raise ValueError(f"{modules} lists no Transformer module.")
    if pooling is None:
        pooling = PoolingConfig()

    st_config = read_json(transformer_dir / "sentence_bert_config.json") or read_json(
        folder / "sentence_bert_config.json"
    )
    prompts, default_prompt_name, similarity_fn_name = read_model_settings(folder)
    return ModelConfig(
        folder=folder,
        transformer_dir=transformer_dir,
        max_seq_length=max_seq_length_from(transformer_dir, st_config),
        do_lower_case=bool(st_config.get("do_lower_case", False)),
        pooling=pooling,
        post=post,
        prompts=prompts,
        default_prompt_name=default_prompt_name,
        similarity_fn_name=similarity_fn_name,
        module_types=kinds,
    )
