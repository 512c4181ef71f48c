"""Reads a sentence-transformers model folder into a description of its pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from lightembed.jsonfiles import read_json, read_json_file  # noqa: F401 - also read from here
from lightembed.modules import Dense, Normalize
from lightembed.pooling import PoolingConfig
from lightembed.static import STATIC_MODULE, StaticLayout, read_layout

_LARGE = 10**8


class HFConfig(dict):
    """config.json as a dict that also allows attribute access (`model.config.id2label`), like transformers'.

    `id2label` keys are ints, as transformers makes them.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"config has no attribute {name!r}") from None

    @classmethod
    def read(cls, folder: Path) -> "HFConfig":
        data = read_json(folder / "config.json")
        id2label = data.get("id2label")
        if isinstance(id2label, dict):
            try:
                data["id2label"] = {int(k): v for k, v in id2label.items()}
            except ValueError:
                pass
        return cls(data)


# Architectures whose learned position table starts after the padding index (fairseq's offset), so a table of
# max_position_embeddings rows holds max_position_embeddings - pad_token_id - 1 positions.
_OFFSET_POSITIONS = ("roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "mpnet", "data2vec-text", "ibert")


def _text_config(config: dict[str, Any]) -> dict[str, Any]:
    """The text model's part of config.json: its `text_config` in a two-tower (CLIP) config, else all of it."""
    text = config.get("text_config")
    return text if isinstance(text, dict) and "max_position_embeddings" not in config else config


def position_limit(transformer_dir: Path) -> int | None:
    """The most tokens the model's position embeddings hold (None when config.json does not bound it)."""
    hf = _text_config(read_json(transformer_dir / "config.json"))
    limit = hf.get("max_position_embeddings")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit < _LARGE:
        return None
    if hf.get("model_type") in _OFFSET_POSITIONS:
        pad = hf.get("pad_token_id")
        limit -= (pad if isinstance(pad, int) else 1) + 1
    return limit


@dataclass(frozen=True)
class TransformerSettings:
    """What sentence_bert_config.json (or, failing it, tokenizer_config.json / config.json) says about inputs."""

    max_seq_length: int | None
    do_lower_case: bool
    transformer_task: str | None
    position_limit: int | None


def read_transformer_settings(transformer_dir: Path, folder: Path | None = None) -> TransformerSettings:
    """The Transformer module's settings from `transformer_dir`, or `folder` (the model root) when the module's
    own sentence_bert_config.json is missing. Values of the wrong type are a ValueError naming the file."""
    path = transformer_dir / "sentence_bert_config.json"
    if not path.is_file() and folder is not None:
        path = folder / "sentence_bert_config.json"
    st_config = read_json(path)
    raw = st_config.get("max_seq_length")
    if raw is not None:
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
            raise ValueError(f"max_seq_length in {path} must be a positive integer, got {raw!r}.")
        max_length: int | None = raw
    else:
        tok_max = read_json(transformer_dir / "tokenizer_config.json").get("model_max_length")
        pos_max = _text_config(read_json(transformer_dir / "config.json")).get("max_position_embeddings")
        candidates = [int(v) for v in (tok_max, pos_max) if isinstance(v, (int, float)) and 0 < v < _LARGE]
        max_length = min(candidates) if candidates else None
    lower = st_config.get("do_lower_case", False)
    if not isinstance(lower, bool):
        raise ValueError(f"do_lower_case in {path} must be true or false, got {lower!r}.")
    task = st_config.get("transformer_task")
    return TransformerSettings(max_length, lower, task, position_limit(transformer_dir))


@dataclass
class ModelConfig:
    """What lightembed needs to run a sentence-transformers model apart from the ONNX graph itself."""

    folder: Path
    transformer_dir: Path
    settings: TransformerSettings
    pooling: PoolingConfig = field(default_factory=PoolingConfig)
    post: list[Callable[[np.ndarray], np.ndarray]] = field(default_factory=list)
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    similarity_fn_name: str | None = None
    module_types: list[str] = field(default_factory=list)
    modalities: tuple[str, ...] = ("text",)
    """What the model embeds: ("text",), or ("text", "image") for a CLIP model (lightembed.clip)."""
    static: StaticLayout | None = None
    """A static-embedding model's table and rules (lightembed.static); None for a transformer."""

    @property
    def is_clip(self) -> bool:
        return "image" in self.modalities

    @property
    def max_seq_length(self) -> int | None:
        return self.settings.max_seq_length

    @property
    def do_lower_case(self) -> bool:
        return self.settings.do_lower_case

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


def read_modules(folder: Path) -> list[tuple[str, Path, str]] | None:
    """(class name, module folder, full type name) per modules.json entry in idx order; None without one."""
    modules = folder / "modules.json"
    entries = read_json_file(modules)
    if entries is None:
        return None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError(f"{modules} must hold a list of module objects.")
    if not entries:
        # sentence-transformers would build a model with no modules, which cannot embed anything.
        raise ValueError(
            f"{modules} lists no modules, so it describes no model; a sentence-transformers folder lists at least "
            "its Transformer (delete modules.json to load a bare transformer with mean pooling)."
        )
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


def read_static_layout(folder: Path) -> StaticLayout | None:
    """The folder's static-embedding layout (lightembed.static), or None when it is not a static model."""
    return read_layout(folder, read_modules(folder))


def load_config(folder: str | Path) -> ModelConfig:
    """Read modules.json and the module configs; a folder with no modules.json gets mean pooling. A static-embedding
    folder (lightembed.static) gets its table's mean, then its own modules."""
    folder = Path(folder)
    modules = folder / "modules.json"
    static = read_static_layout(folder)
    entries = read_modules(folder) or [("Transformer", folder, "Transformer")]
    if static is not None:
        entries = [(STATIC_MODULE, static.module_dir, STATIC_MODULE), *static.modules]
    transformer_dir: Path | None = None
    pooling: PoolingConfig | None = None
    post: list[Callable[[np.ndarray], np.ndarray]] = []
    kinds: list[str] = []
    modalities: tuple[str, ...] = ("text",)
    for kind, path, type_name in entries:
        kinds.append(kind)
        if kind == "CLIPModel" or (kind == "Transformer" and _is_clip_dir(path)):  # text + vision towers
            if transformer_dir is not None:
                raise ValueError(f"{modules} lists more than one Transformer module.")
            transformer_dir, modalities = path, ("text", "image")
        elif kind == "Transformer":
            if transformer_dir is not None:
                raise ValueError(f"{modules} lists more than one Transformer module.")
            transformer_dir = path
        elif kind == STATIC_MODULE and static is not None and transformer_dir is None:
            transformer_dir = path  # its tokenizer.json; the table's mean is the static graph's pooled output
        elif kind == "Pooling":
            pooling = PoolingConfig.from_dict(read_json(path / "config.json"))
        elif kind == "Normalize":
            post.append(Normalize())  # its folder may be missing: it has no parameters
        elif kind == "Dense":
            post.append(Dense.from_dir(path))
        else:
            raise ValueError(
                f"Module type {type_name!r} in {modules} is not supported by lightembed "
                "(supported: Transformer, CLIPModel, StaticEmbedding first, Pooling, Dense, Normalize)."
            )
    if transformer_dir is None:
        raise ValueError(f"{modules} lists no Transformer module.")
    if pooling is None:
        pooling = PoolingConfig()

    if static is not None:
        settings = TransformerSettings(static.max_length, False, None, None)
    else:
        settings = read_transformer_settings(transformer_dir, folder)
    prompts, default_prompt_name, similarity_fn_name = read_model_settings(folder)
    return ModelConfig(
        folder=folder,
        transformer_dir=transformer_dir,
        settings=settings,
        pooling=pooling,
        post=post,
        prompts=prompts,
        default_prompt_name=default_prompt_name,
        similarity_fn_name=similarity_fn_name,
        module_types=kinds,
        modalities=modalities,
        static=static,
    )


def _is_clip_dir(path: Path) -> bool:
    """Whether a Transformer module folder holds a CLIP checkpoint (sentence-transformers 5 may save CLIP as a plain
    Transformer with an image modality)."""
    return "CLIPModel" in (read_json(path / "config.json").get("architectures") or [])
