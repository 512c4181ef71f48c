"""What kind of model a checkpoint is (embedder, reranker or sparse encoder), read from its folder or forced.

The task names are optimum's: feature-extraction (sentence-transformers SentenceTransformer: hidden states,
pooled by the modules that follow), text-classification (CrossEncoder: (batch, num_labels) logits) and
fill-mask (SparseEncoder / SPLADE: (batch, seq, vocab) logits, pooled by SpladePooling); multi-vector is
lightembed's name for sentence-transformers 6's MultiVectorEncoder (ColBERT-style: one vector per token), whose graph
is a feature-extraction one (graph_task).
"""

from __future__ import annotations

from dataclasses import dataclass

FEATURE_EXTRACTION = "feature-extraction"
TEXT_CLASSIFICATION = "text-classification"
FILL_MASK = "fill-mask"
MULTI_VECTOR = "multi-vector"
TASKS: tuple[str, ...] = (FEATURE_EXTRACTION, TEXT_CLASSIFICATION, FILL_MASK, MULTI_VECTOR)


@dataclass(frozen=True)
class TaskInfo:
    """How one task is exported, loaded on torch and run by the lightembed runtime."""

    name: str
    """optimum's task name, also the value of --task."""
    st_class: str
    """The sentence-transformers class that loads the torch reference."""
    runtime_class: str
    """The lightembed class that loads the export."""
    output: str
    """The ONNX graph's output the runtime reads."""
    what: str
    """A few words for messages."""


TASK_INFO: dict[str, TaskInfo] = {
    FEATURE_EXTRACTION: TaskInfo(
        FEATURE_EXTRACTION, "SentenceTransformer", "SentenceTransformer", "last_hidden_state", "embedding model"
    ),
    TEXT_CLASSIFICATION: TaskInfo(TEXT_CLASSIFICATION, "CrossEncoder", "CrossEncoder", "logits", "cross-encoder"),
    FILL_MASK: TaskInfo(FILL_MASK, "SparseEncoder", "SparseEncoder", "logits", "sparse encoder (SPLADE)"),
    MULTI_VECTOR: TaskInfo(
        MULTI_VECTOR, "MultiVectorEncoder", "MultiVectorEncoder", "last_hidden_state", "multi-vector encoder (ColBERT)"
    ),
}


def graph_task(task: str) -> str:
    """The task the ONNX graph is exported for (optimum's name): a multi-vector encoder's graph is a
    feature-extraction one (every token's hidden state)."""
    return FEATURE_EXTRACTION if task == MULTI_VECTOR else task

# sentence-transformers' Transformer setting (sentence_bert_config.json "transformer_task") for each task.
_ST_TRANSFORMER_TASKS = {
    "feature-extraction": FEATURE_EXTRACTION,
    "sequence-classification": TEXT_CLASSIFICATION,
    "text-classification": TEXT_CLASSIFICATION,
    "fill-mask": FILL_MASK,
}
# config_sentence_transformers.json "model_type", written by sentence-transformers >= 5.
_ST_MODEL_TYPES = {
    "SentenceTransformer": FEATURE_EXTRACTION,
    "CrossEncoder": TEXT_CLASSIFICATION,
    "SparseEncoder": FILL_MASK,
    "MultiVectorEncoder": MULTI_VECTOR,
    "ColBERT": MULTI_VECTOR,  # PyLate <= 3, which sentence-transformers 6 loads as a MultiVectorEncoder
}
_MULTI_VECTOR_ARCHITECTURES = ("HF_ColBERT",)  # Stanford ColBERT checkpoints
_SPARSE_MODULES = ("SpladePooling", "MLMTransformer", "SparseStaticEmbedding")


@dataclass(frozen=True)
class FolderFacts:
    """What task detection reads from a checkpoint folder (see source.read_layout)."""

    module_types: tuple[str, ...]
    """Class names of modules.json's modules, e.g. ('Transformer', 'SpladePooling'); () without modules.json."""
    transformer_task: str | None
    """sentence_bert_config.json's transformer_task, if set."""
    st_model_type: str | None
    """config_sentence_transformers.json's model_type, if set."""
    architectures: tuple[str, ...]
    """config.json's architectures."""


def check_task(task: str) -> str:
    """`task` normalized; ValueError unless it is one of TASKS."""
    name = str(task).strip().lower()
    if name not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    return name


def detect_task(facts: FolderFacts) -> tuple[str, str]:
    """The task of a checkpoint folder and a short reason.

    sentence-transformers layouts: SpladePooling or MLMTransformer modules mean fill-mask; otherwise the
    Transformer's transformer_task, then config_sentence_transformers.json's model_type decide; a
    MultiVectorEncoder (or PyLate ColBERT) model_type or a Stanford HF_ColBERT architecture means multi-vector first.
    A folder without modules.json goes by config.json's architecture: *ForSequenceClassification is a cross-encoder,
    *ForMaskedLM a SPLADE model; anything else is an embedding model (mean pooling).
    """
    sparse = [m for m in facts.module_types if m in _SPARSE_MODULES]
    if sparse:
        return FILL_MASK, f"modules.json has {sparse[0]}"
    if _ST_MODEL_TYPES.get(facts.st_model_type or "") == MULTI_VECTOR:
        return MULTI_VECTOR, f"a sentence-transformers {facts.st_model_type} (config_sentence_transformers.json)"
    colbert = [a for a in facts.architectures if a in _MULTI_VECTOR_ARCHITECTURES]
    if colbert:
        return MULTI_VECTOR, f"a {colbert[0]} checkpoint"
    if facts.module_types:
        if facts.transformer_task in _ST_TRANSFORMER_TASKS:
            task = _ST_TRANSFORMER_TASKS[facts.transformer_task]
            return task, f"the Transformer module's transformer_task is {facts.transformer_task!r}"
        if facts.st_model_type in _ST_MODEL_TYPES:
            return _ST_MODEL_TYPES[facts.st_model_type], f"a sentence-transformers {facts.st_model_type}"
        return FEATURE_EXTRACTION, "a sentence-transformers model"
    if facts.st_model_type in ("CrossEncoder", "SparseEncoder"):
        return _ST_MODEL_TYPES[facts.st_model_type], f"a sentence-transformers {facts.st_model_type}"
    for architecture in facts.architectures:
        if architecture.endswith("ForSequenceClassification"):
            return TEXT_CLASSIFICATION, f"no modules.json and a {architecture} checkpoint"
        if architecture.endswith("ForMaskedLM"):
            return FILL_MASK, f"no modules.json and a {architecture} checkpoint"
    return FEATURE_EXTRACTION, "no modules.json: a transformers model, mean pooling"


def resolve_task(requested: str | None, facts: FolderFacts) -> tuple[str, str]:
    """The task to export: `requested` (forced) if given, else the detected one; with a reason."""
    if requested is None:
        return detect_task(facts)
    task = check_task(requested)
    detected, why = detect_task(facts)
    if task == detected:
        return task, f"--task {task} ({why})"
    return task, f"--task {task} (detected {detected}: {why})"
