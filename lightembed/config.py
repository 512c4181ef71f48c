"""Reads a sentence-transformers model folder into a description of its pipeline."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from lightembed.errors import LightembedValueError, ModelFileError
from lightembed.jsonfiles import read_json, read_json_file  # noqa: F401 - also read from here
from lightembed.modules import SENTENCE, TOKENS, Dense, LayerNorm, Normalize
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
    query_length: int | None = None
    """sentence-transformers 6: the truncation length of task="query" inputs (encode_query)."""
    document_length: int | None = None
    """sentence-transformers 6: the truncation length of task="document" inputs (encode_document)."""
    query_expansion: dict[str, Any] | None = None
    """sentence-transformers 6: ColBERT query expansion ({"strategy", "attend", "token", "length"}), or None."""
    source: Path | None = None
    """The sentence_bert_config.json these settings came from (for error messages)."""


_EXPANSION_KEYS = ("strategy", "attend", "token", "length")


def _optional_length(st_config: dict[str, Any], key: str, path: Path) -> int | None:
    value = st_config.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise LightembedValueError(f"{key} in {path} must be a positive integer, got {value!r}.")
    return value


def _query_expansion(st_config: dict[str, Any], path: Path) -> dict[str, Any] | None:
    """sentence-transformers 6.2's query_expansion, checked and with its defaults filled in, as 6.2 does."""
    value = st_config.get("query_expansion")
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) - set(_EXPANSION_KEYS):
        raise LightembedValueError(f"query_expansion in {path} must be an object with keys among {_EXPANSION_KEYS}, got {value!r}.")
    if value.get("strategy") not in ("fixed", "min"):
        raise LightembedValueError(f"query_expansion strategy in {path} must be 'fixed' or 'min', got {value.get('strategy')!r}.")
    attend = value.get("attend", False)
    length = value.get("length")
    if not isinstance(attend, bool):
        raise LightembedValueError(f"query_expansion attend in {path} must be true or false, got {attend!r}.")
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise LightembedValueError(f"query_expansion length in {path} must be a positive integer, got {length!r}.")
    token = value.get("token")
    if token is not None and not isinstance(token, str):
        raise LightembedValueError(f"query_expansion token in {path} must be a string or null, got {token!r}.")
    return {"strategy": value["strategy"], "attend": attend, "token": token, "length": length}


def _check_transformer_options(st_config: dict[str, Any], path: Path, chat_template: bool = False) -> None:
    """Refuse, by name, the sentence-transformers 6 Transformer options that would change the vectors and that
    lightembed does not reproduce (options that only change torch's speed, like unpad_inputs, are accepted).
    `chat_template`: the folder holds the chat template pre-rendered by lightembed-export (lightembed.llm_reranker),
    so the 'message' modality and the template's own processing_kwargs ("chat_template") are what it runs."""
    processing = st_config.get("processing_kwargs")
    if chat_template and isinstance(processing, dict):
        processing = {key: value for key, value in processing.items() if key != "chat_template"}
    if processing:
        raise LightembedValueError(
            f"processing_kwargs {processing!r} in {path} are not supported by lightembed: the runtime tokenizes with "
            "tokenizer.json and the model's max_seq_length only (pass per-call truncation as "
            "encode(..., processing_kwargs={'text': {'max_length': N}}) instead)."
        )
    modality = st_config.get("modality_config")
    if isinstance(modality, dict):
        if "message" in modality and not chat_template:
            raise LightembedValueError(
                f"modality_config in {path} has the 'message' modality: sentence-transformers 6 renders text inputs "
                "through the tokenizer's chat template for it, which lightembed does not do. Remove the "
                "'message' entry (text only) or the tokenizer's chat_template before exporting."
            )
        text = modality.get("text")
        two_towers = any("image" in str(key) for key in modality)  # CLIP: lightembed.clip runs its towers
        if not two_towers and isinstance(text, dict) and (text.get("method"), text.get("method_output_name")) not in (
            ("forward", "last_hidden_state"),
            ("forward", "logits"),
            ("forward", "embeddings"),
        ):
            raise LightembedValueError(
                f"modality_config text entry {text!r} in {path} is not supported by lightembed: its graphs give the "
                "transformer's forward() output (last_hidden_state, logits)."
            )


def read_transformer_settings(
    transformer_dir: Path, folder: Path | None = None, chat_template: bool = False
) -> TransformerSettings:
    """The Transformer module's settings from `transformer_dir`, or `folder` (the model root) when the module's
    own sentence_bert_config.json is missing. Values of the wrong type are a ValueError naming the file.
    `chat_template`: the chat template is pre-rendered in the folder (see _check_transformer_options)."""
    path = transformer_dir / "sentence_bert_config.json"
    if not path.is_file() and folder is not None:
        path = folder / "sentence_bert_config.json"
    st_config = read_json(path)
    _check_transformer_options(st_config, path, chat_template)
    raw = st_config.get("max_seq_length")
    if raw is not None:
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
            raise LightembedValueError(f"max_seq_length in {path} must be a positive integer, got {raw!r}.")
        max_length: int | None = raw
    else:
        tok_max = read_json(transformer_dir / "tokenizer_config.json").get("model_max_length")
        pos_max = _text_config(read_json(transformer_dir / "config.json")).get("max_position_embeddings")
        candidates = [int(v) for v in (tok_max, pos_max) if isinstance(v, (int, float)) and 0 < v < _LARGE]
        max_length = min(candidates) if candidates else None
    lower = st_config.get("do_lower_case", False)
    if not isinstance(lower, bool):
        raise LightembedValueError(f"do_lower_case in {path} must be true or false, got {lower!r}.")
    task = st_config.get("transformer_task")
    return TransformerSettings(
        max_length,
        lower,
        task,
        position_limit(transformer_dir),
        query_length=_optional_length(st_config, "query_length", path),
        document_length=_optional_length(st_config, "document_length", path),
        query_expansion=_query_expansion(st_config, path),
        source=path,
    )


@dataclass
class ModelConfig:
    """What lightembed needs to run a sentence-transformers model apart from the ONNX graph itself."""

    folder: Path
    transformer_dir: Path
    settings: TransformerSettings
    pooling: PoolingConfig = field(default_factory=PoolingConfig)
    post: list[Callable[[np.ndarray], np.ndarray]] = field(default_factory=list)
    """The modules after Pooling, in order (lightembed.modules.run_modules applies them)."""
    pre: list[Callable[[np.ndarray], np.ndarray]] = field(default_factory=list)
    """The modules between the Transformer and Pooling (sentence-transformers 6: on token embeddings)."""
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
        return any(isinstance(m, Normalize) and m.output_name == SENTENCE for m in self.post)

    def output_dimension(self, hidden_size: int | None) -> int | None:
        """Dimension of the final sentence embedding given the transformer's hidden size."""
        dim = hidden_size if hidden_size is not None else self.pooling.embedding_dimension
        for module in self.pre:
            if isinstance(module, Dense) and module.output_name == TOKENS:
                dim = module.out_features
        if dim is None:
            return None
        dim *= len(self.pooling.modes)
        for module in self.post:
            if isinstance(module, Dense) and module.output_name == SENTENCE:
                dim = module.out_features
        return dim


def _module_kind(type_name: str) -> str:
    # Old ('sentence_transformers.models.Pooling') and new ('sentence_transformers.sentence_transformer.modules
    # .pooling.Pooling', 'sentence_transformers.base.modules.transformer.Transformer') names end in the class.
    return type_name.rsplit(".", 1)[-1]


# sentence-transformers module classes lightembed does not run, with why (a folder naming one is refused by name).
_REFUSED_MODULES = {
    "Router": "it sends queries and documents through different modules, which lightembed runs only for a Router "
    "that is a folder's first module (lightembed.router)",
    "Asym": "it sends queries and documents through different modules, and lightembed runs one pipeline",
    "WeightedLayerPooling": "it pools every hidden layer, and the exported graph gives the last one only",
    "CNN": "it has no transformer graph to export",
    "LSTM": "it has no transformer graph to export",
    "BoW": "it has no transformer graph to export",
    "WordEmbeddings": "it has no transformer graph to export",
    "WordWeights": "it has no transformer graph to export",
    "StaticEmbedding": "a StaticEmbedding runs as the first module of a SentenceTransformer folder (lightembed.static)",
    "MultiVectorMask": "it belongs to a multi-vector model: load the folder with lightembed.MultiVectorEncoder",
    "HierarchicalTokenPooling": "it belongs to a multi-vector model: load the folder with lightembed.MultiVectorEncoder",
    "SpladePooling": "it belongs to a sparse model: load the folder with lightembed.SparseEncoder",
    "LogitScore": "it belongs to a reranker: load the folder with lightembed.CrossEncoder",
}


def refuse_module(type_name: str, modules_path: Path, supported: str) -> ValueError:
    """The error for a module type a model class does not run, with the reason where one is known."""
    why = _REFUSED_MODULES.get(_module_kind(type_name))
    reason = f": {why}" if why else ""
    return ValueError(
        f"Module type {type_name!r} in {modules_path} is not supported by lightembed{reason} (supported: {supported})."
    )


def writer_version(folder: Path) -> tuple[int, ...] | None:
    """The sentence-transformers version that saved `folder` (config_sentence_transformers.json `__version__`),
    as a tuple of ints; None when the file does not say."""
    version = read_json(folder / "config_sentence_transformers.json").get("__version__")
    text = version.get("sentence_transformers") if isinstance(version, dict) else None
    match = re.match(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?", text) if isinstance(text, str) else None
    return tuple(int(part) for part in match.groups() if part is not None) if match else None


def read_modules(folder: Path) -> list[tuple[str, Path, str]] | None:
    """(class name, module folder, full type name) per modules.json entry in idx order; None without one."""
    modules = folder / "modules.json"
    entries = read_json_file(modules)
    if entries is None:
        return None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise LightembedValueError(f"{modules} must hold a list of module objects.")
    if not entries:
        # sentence-transformers would build a model with no modules, which cannot embed anything.
        raise LightembedValueError(
            f"{modules} lists no modules, so it describes no model; a sentence-transformers folder lists at least "
            "its Transformer (delete modules.json to load a bare transformer with mean pooling)."
        )
    return [
        (_module_kind(str(e.get("type", ""))), _inside(folder, e.get("path", ""), modules), str(e.get("type")))
        for e in sorted(entries, key=lambda e: e.get("idx", 0))
    ]


def _inside(folder: Path, relative: Any, listed_in: Path) -> Path:
    """`folder / relative`, refused when it is not a relative path that stays inside the model folder (a module
    read from elsewhere would change the vectors without any file of the model changing)."""
    if not isinstance(relative, str):
        raise ModelFileError(f"{listed_in}: a module's path must be a string, got {relative!r}.")
    path = folder / relative
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        raise ModelFileError(
            f"{listed_in}: the module path {relative!r} leads outside the model folder {folder}; a model's modules "
            "must live inside its folder."
        ) from None
    return path


def read_model_settings(folder: Path) -> tuple[dict[str, str], str | None, str | None]:
    """(prompts, default_prompt_name, similarity_fn_name) from config_sentence_transformers.json."""
    path = folder / "config_sentence_transformers.json"
    model_config = read_json(path)
    prompts = model_config.get("prompts") or {}
    if not isinstance(prompts, dict) or not all(isinstance(v, str) for v in prompts.values()):
        raise LightembedValueError(f"'prompts' in {path} must be an object of strings.")
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
    pre: list[Callable[[np.ndarray], np.ndarray]] = []
    post: list[Callable[[np.ndarray], np.ndarray]] = []
    kinds: list[str] = []
    modalities: tuple[str, ...] = ("text",)
    for kind, path, type_name in entries:
        kinds.append(kind)
        if kind == "CLIPModel" or (kind == "Transformer" and _is_clip_dir(path)):  # text + vision towers
            if transformer_dir is not None:
                raise LightembedValueError(f"{modules} lists more than one Transformer module.")
            transformer_dir, modalities = path, ("text", "image")
        elif kind == "Transformer":
            if transformer_dir is not None:
                raise LightembedValueError(f"{modules} lists more than one Transformer module.")
            transformer_dir = path
        elif kind == STATIC_MODULE and static is not None and transformer_dir is None:
            # its tokenizer.json; the table's mean (the static graph's pooled output) is its sentence embedding
            transformer_dir, pooling = path, PoolingConfig()
        elif kind == "Pooling":
            if pooling is not None:
                raise LightembedValueError(f"{modules} lists more than one Pooling module.")
            pooling = PoolingConfig.from_dict(read_json(path / "config.json"))
        elif kind in ("Normalize", "Dense", "Dropout", "LayerNorm"):
            if kind == "Dropout":
                continue  # dropout does nothing at inference
            reader: Any = {"Normalize": Normalize, "Dense": Dense, "LayerNorm": LayerNorm}[kind]
            module = reader.from_dir(path)
            if pooling is None and module.input_name != TOKENS:
                raise LightembedValueError(
                    f"The {kind} module at {path} reads {module.input_name!r} before any Pooling module has made "
                    "it; sentence-transformers fails on this folder too."
                )
            (pre if pooling is None else post).append(module)
        else:
            raise refuse_module(
                type_name, modules, "Transformer, CLIPModel, StaticEmbedding (first), Pooling, Dense, Normalize, LayerNorm, Dropout"
            )
    if transformer_dir is None:
        raise LightembedValueError(f"{modules} lists no Transformer module.")
    if pooling is None:
        pooling = PoolingConfig()
    version = writer_version(folder)
    if version is not None and version >= (6,):
        pooling = replace(pooling, weights_from_first_token=True)

    if static is not None:
        settings = TransformerSettings(static.max_length, False, None, None)
    else:
        settings = read_transformer_settings(transformer_dir, folder)
    for key in ("query_length", "document_length", "query_expansion"):
        if getattr(settings, key) is not None:
            raise LightembedValueError(
                f"{key} in {settings.source} is not supported on a SentenceTransformer by lightembed (it is a "
                "multi-vector setting: load the folder with lightembed.MultiVectorEncoder if it is one)."
            )
    prompts, default_prompt_name, similarity_fn_name = read_model_settings(folder)
    return ModelConfig(
        folder=folder,
        transformer_dir=transformer_dir,
        settings=settings,
        pooling=pooling,
        post=post,
        pre=pre,
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
