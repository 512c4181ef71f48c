"""MultiVectorEncoder: sentence-transformers 6's late-interaction (ColBERT) model on an ONNX graph, in NumPy.

A folder saved by sentence-transformers 6's MultiVectorEncoder (modules.json: Transformer, token-level Dense
projection(s), MultiVectorMask, token-level Normalize, optionally HierarchicalTokenPooling) plus an ONNX file of
the transformer (`last_hidden_state`). encode_query / encode_document give one (tokens, dim) array per input:
the query prefix and `query_length`, ColBERT query expansion with mask tokens, the document prefix and
`document_length`, the skiplist for documents, exactly as 6.2 (lightembed.multi_vector). similarity() is MaxSim
(or mean MaxSim) in NumPy (lightembed.maxsim).

Memory
------
A document costs tokens x dim values: a 300-token passage at dim 128 is 38,400 values, 150 KB in float32, 75 KB
in float16, 38 KB in int8 (`precision=`), against 0.5-1.5 KB for one single-vector embedding. int8 stores
round(x * 127) of the (unit-length) token vectors: MaxSim on them is 127**2 times the float score, up to
rounding, so rankings hold; divide by 16129 for float-scale scores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal, Sequence

import numpy as np
from tokenizers import Tokenizer as HFTokenizer

from lightembed import bge_m3
from lightembed import maxsim as scoring
from lightembed.base import EmbeddingModel, ModelSetup
from lightembed.config import (
    HFConfig,
    TransformerSettings,
    read_json,
    read_model_settings,
    read_modules,
    read_transformer_settings,
)
from lightembed.errors import LightembedTypeError, LightembedValueError
from lightembed.graphs.protocol import last_dim
from lightembed.inputs import as_text_list, check_batch_size, check_int, take_sentences
from lightembed.modules import TOKENS, l2_normalize, run_modules
from lightembed.multi_vector import (
    HierarchicalTokenPooling,
    ScoringMask,
    expand_queries,
    read_multi_vector_modules,
)
from lightembed.progress import progress
from lightembed.tokenize import Batch, Tokenizer, _token_str, plan_batches, token_counts
from lightembed.unsupported import refusal

__all__ = ["MultiVectorEncoder", "HierarchicalTokenPooling"]

SIMILARITY_FN_NAMES = ("maxsim", "meanmaxsim")
PRECISIONS = ("float32", "float16", "int8")
_LEGACY_KEYS = ("query_prefix", "document_prefix", "do_query_expansion", "attend_to_expansion_tokens")


class MultiVectorEncoder(EmbeddingModel):
    """Per-token embeddings from a multi-vector (ColBERT) model exported to ONNX, with sentence-transformers 6's
    MultiVectorEncoder API. `device`, `providers`, `threads`, `file_name`, `max_batch_tokens` and `verify` work as
    for `SentenceTransformer`. See the module docstring for what runs where and the memory each output takes."""

    _preferred_outputs = ("last_hidden_state", "token_embeddings")
    _default_similarity = "maxsim"
    SUPPORTED_SIMILARITY_FN_NAMES: ClassVar[tuple[str, ...]] = SIMILARITY_FN_NAMES

    def __init__(
        self,
        model_name_or_path: str | Path,
        *,
        device: str | None = None,
        prompts: dict[str, str] | None = None,
        default_prompt_name: str | None = None,
        cache_folder: str | None = None,
        trust_remote_code: bool = False,
        revision: str | None = None,
        local_files_only: bool = False,
        token: bool | str | None = None,
        model_kwargs: dict[str, Any] | None = None,
        processor_kwargs: dict[str, Any] | None = None,
        config_kwargs: dict[str, Any] | None = None,
        model_card_data: Any = None,
        backend: str | None = None,
        similarity_fn_name: str | None = None,
        file_name: str | None = None,
        providers: Sequence[Any] | None = None,
        threads: int | None = None,
        max_batch_tokens: int | Literal["auto"] | None = "auto",
        verify: bool | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("modules", None)
        if kwargs:
            raise LightembedTypeError(f"MultiVectorEncoder() got unexpected keyword arguments: {sorted(kwargs)}.")
        del trust_remote_code, config_kwargs, model_card_data  # nothing to run or configure in an exported graph
        max_length = (processor_kwargs or {}).get("model_max_length")
        self._task_tokenizers: dict[int | None, Tokenizer] = {}
        super().__init__(
            model_name_or_path,
            device,
            file_name=file_name,
            revision=revision,
            cache_folder=cache_folder,
            local_files_only=local_files_only,
            token=token,
            providers=providers,
            threads=threads,
            model_kwargs=model_kwargs,
            backend=backend,
            prompts=prompts,
            default_prompt_name=default_prompt_name,
            similarity_fn_name=similarity_fn_name,
            max_seq_length=max_length,
            max_batch_tokens=max_batch_tokens,
            verify=verify,
        )

    def _setup(self) -> ModelSetup:
        folder = self.model_dir
        saved = read_json(folder / "config_sentence_transformers.json")
        legacy = sorted(set(_LEGACY_KEYS) & set(saved)) or (["model_type=ColBERT"] if saved.get("model_type") == "ColBERT" else [])
        if legacy or "HF_ColBERT" in (read_json(folder / "config.json").get("architectures") or []):
            raise LightembedValueError(
                f"{folder} is a PyLate / Stanford-NLP ColBERT save ({', '.join(legacy) or 'HF_ColBERT'}), which "
                "lightembed does not read: load it once with sentence-transformers 6 "
                "(MultiVectorEncoder(path).save(new_path)), which converts it, and export new_path."
            )
        entries = read_modules(folder)
        self._colbert_head = bge_m3.has_heads(self._graph)
        if self._colbert_head and entries is not None:  # BGE-M3: the graph's ColBERT output, normalized already
            entries = [entry for entry in entries if entry[0] == "Transformer"]
        if entries is None:
            raise LightembedValueError(
                f"{folder} has no modules.json: a MultiVectorEncoder needs the folder sentence-transformers 6 saves "
                "(Transformer, Dense projection, MultiVectorMask, Normalize)."
            )
        transformer_dir = next((path for kind, path, _ in entries if kind == "Transformer"), folder)
        backend = HFTokenizer.from_file(str(transformer_dir / "tokenizer.json")) if (transformer_dir / "tokenizer.json").is_file() else None
        tokenizer_config = read_json(transformer_dir / "tokenizer_config.json")
        unk = _token_str(tokenizer_config.get("unk_token"))
        token_to_id = backend.token_to_id if backend is not None else (lambda _: None)
        transformer_dir, self.modules = read_multi_vector_modules(entries, folder / "modules.json", token_to_id, unk)
        self._transformer_dir = transformer_dir
        self.config = HFConfig.read(transformer_dir)
        """The transformer's config.json (as transformers' config: attribute access)."""
        self.settings: TransformerSettings = read_transformer_settings(transformer_dir, folder)
        expansion = self.settings.query_expansion
        self._expansion_id: int | None = None
        if expansion is not None:
            names = [expansion["token"]] if expansion["token"] else [
                _token_str(tokenizer_config.get("mask_token")), _token_str(tokenizer_config.get("eos_token"))
            ]  # fmt: skip
            ids = [token_to_id(n) for n in names if n]
            self._expansion_id = next((i for i in ids if i is not None), None)
            if self._expansion_id is None:
                raise LightembedValueError(
                    f"query_expansion in {self.settings.source} needs a token ({expansion['token'] or 'the mask or eos token'}) "
                    "that the tokenizer does not have."
                )
        prompts, default_prompt_name, similarity_fn_name = read_model_settings(folder)
        if similarity_fn_name not in SIMILARITY_FN_NAMES:  # a legacy cosine/dot falls back to MaxSim, as in 6.2;
            similarity_fn_name = "meanmaxsim" if self._colbert_head else None  # BGE-M3 scores by the mean MaxSim
        return ModelSetup(transformer_dir, self.settings, prompts, default_prompt_name, similarity_fn_name)

    # ----- properties sentence-transformers users read ---------------------------------------------
    @property
    def similarity_fn_name(self) -> str:
        """The score similarity() uses: "maxsim" (default) or "meanmaxsim" (MaxSim / the query's token count)."""
        return self._similarity_fn_name

    @similarity_fn_name.setter
    def similarity_fn_name(self, value: Any) -> None:
        value = getattr(value, "value", value)  # a SimilarityFunction member
        if value not in SIMILARITY_FN_NAMES:
            raise LightembedValueError(
                f"MultiVectorEncoder only supports {SIMILARITY_FN_NAMES}, got {value!r}: cosine / dot / euclidean / "
                "manhattan are defined on single vectors and do not compose with per-token embeddings."
            )
        self._similarity_fn_name = value

    @property
    def query_length(self) -> int | None:
        """Truncation length of queries (task="query"); None: max_seq_length."""
        return self.settings.query_length

    @property
    def document_length(self) -> int | None:
        """Truncation length of documents (task="document"); None: max_seq_length."""
        return self.settings.document_length

    @property
    def query_expansion(self) -> dict[str, Any] | None:
        """The ColBERT query expansion ({"strategy", "attend", "token", "length"}) or None."""
        return self.settings.query_expansion

    def get_embedding_dimension(self) -> int | None:
        """The width of each token vector encode() returns."""
        if self._colbert_head:
            return last_dim(self._graph.output_shape(bge_m3.COLBERT_OUTPUT))
        dims = [m.out_features for m in self.modules.token_modules if hasattr(m, "out_features")]
        if dims:
            return dims[-1]
        return self._graph.output_width or read_json(self._transformer_dir / "config.json").get("hidden_size")

    get_sentence_embedding_dimension = get_embedding_dimension

    def tokenize(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Token arrays for `texts`, padded to the longest: input_ids, attention_mask, token_type_ids."""
        texts, _ = as_text_list(texts, "texts")
        return self.pad(self.tokenize_inputs(texts)).as_dict()

    # ----- encoding ---------------------------------------------------------------------------------
    def _tokenizer_for(self, max_length: int | None) -> Tokenizer:
        """The tokenizer truncating at `max_length` (None: max_seq_length's), a copy made once per length."""
        base = self.tokenizer_wrapper
        if max_length is None or max_length == base.max_length:
            return base
        if max_length not in self._task_tokenizers:
            self._task_tokenizers[max_length] = base.truncating_at(max_length)
        return self._task_tokenizers[max_length]

    def _task_length(self, task: str | None, processing_kwargs: dict[str, Any] | None) -> int | None:
        """The truncation length for `task` as 6.2's Transformer.preprocess picks it."""
        override = _text_max_length(processing_kwargs)
        expansion = self.query_expansion if task == "query" else None
        length = override if override is not None else {"query": self.query_length, "document": self.document_length}.get(task or "")
        if expansion is None:
            return length
        if expansion["strategy"] == "fixed":
            return expansion["length"]
        return None if length is None else max(length, expansion["length"])

    def forward(self, batch: Batch, task: str | None = None, expansion: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The features of one padded batch after the modules: token_embeddings (rows, seq, dim) and the scoring
        attention_mask (rows, seq) that MultiVectorMask leaves (expansion: the query expansion positions)."""
        if self._colbert_head:  # BGE-M3's vectors leave out the CLS token: the mask's first column goes too
            tokens = self._graph(batch.as_dict(), bge_m3.COLBERT_OUTPUT)
            return {TOKENS: tokens, "attention_mask": batch.attention_mask[:, 1:].astype(bool)}
        features = run_modules(self.modules.token_modules, {TOKENS: self._graph(batch.as_dict())})
        mask = self.modules.mask or ScoringMask(skiplist_tasks=())
        if self.modules.mask is None:
            expansion = None  # without a MultiVectorMask the expansion positions are not scored (6.2 warns)
        features["attention_mask"] = mask(batch.input_ids, batch.attention_mask, task, expansion)
        return features

    def encode_query(self, inputs: Any = None, prompt_name: str | None = None, prompt: str | None = None,
                     **kwargs: Any) -> Any:  # fmt: skip
        """encode() with task="query" and the "query" prompt when the model has one and none was given."""
        if prompt_name is None and prompt is None and "query" in self.prompts:
            prompt_name = "query"
        return self.encode(inputs, prompt_name, prompt, task="query", **kwargs)

    def encode_document(self, inputs: Any = None, prompt_name: str | None = None, prompt: str | None = None,
                        **kwargs: Any) -> Any:  # fmt: skip
        """encode() with task="document" and the first of the "document", "passage", "corpus" prompts."""
        if prompt_name is None and prompt is None:
            prompt_name = next((n for n in ("document", "passage", "corpus") if n in self.prompts), None)
        return self.encode(inputs, prompt_name, prompt, task="document", **kwargs)

    def encode(
        self,
        inputs: Any = None,
        prompt_name: str | None = None,
        prompt: str | None = None,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        output_value: Literal["token_embeddings"] | None = "token_embeddings",
        convert_to_numpy: bool = False,
        device: str | None = None,
        normalize_embeddings: bool = False,
        pool: Any = None,
        chunk_size: int | None = None,
        token_pooling: HierarchicalTokenPooling | None = None,
        task: str | None = None,
        precision: Literal["float32", "float16", "int8"] = "float32",
        **kwargs: Any,
    ) -> Any:
        """Per-token embeddings: one (tokens_i, dim) array per input (a list; one array for a single text), the
        tokens MultiVectorMask keeps for `task` ("query", "document" or None, which counts as a document).

        As sentence-transformers 6.2's encode, with NumPy arrays where it gives tensors (`convert_to_numpy` is
        accepted either way). `output_value=None` gives per-input dicts of the padded features instead.
        `precision` "float16" or "int8" stores the vectors smaller (see the module docstring for the cost).
        """
        inputs = take_sentences(inputs, kwargs)
        del convert_to_numpy, chunk_size  # always NumPy; chunking belongs to the pool
        processing_kwargs = kwargs.pop("processing_kwargs", None)
        if "convert_to_tensor" in kwargs:
            raise LightembedValueError(
                "MultiVectorEncoder.encode() has no `convert_to_tensor`: multi-vector embeddings are variable-length, "
                "so there is nothing to stack. encode() already returns a list of arrays."
            )
        if self._uses_pool(pool, device):
            from lightembed.unsupported import NotSupportedError

            raise NotSupportedError(
                "MultiVectorEncoder.encode() with a pool or a list of devices is not supported by lightembed yet; "
                "encode in one process (threads= sets its cores)."
            )
        self._check_call("encode()", device, kwargs)
        if output_value not in ("token_embeddings", None):
            raise LightembedValueError(f'output_value must be "token_embeddings" or None, got {output_value!r}.')
        if precision not in PRECISIONS:
            raise LightembedValueError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
        texts, single = as_text_list(inputs)
        batch_size = check_batch_size(batch_size)
        resolved = self._prompt(prompt, prompt_name)
        if resolved:
            texts = [resolved + text for text in texts]
        tokenizer = self._tokenizer_for(self._task_length(task, processing_kwargs))
        expansion = self.query_expansion if task == "query" else None
        encodings = tokenizer.encode(texts)
        results: list[Any] = [None] * len(texts)
        plan = plan_batches(token_counts(encodings), batch_size, self.max_batch_tokens)
        for idx in progress(plan, bool(show_progress_bar), "Batches", total=len(plan)):
            batch = tokenizer.pad([encodings[i] for i in idx])
            positions = None
            if expansion is not None:
                batch, positions = expand_queries(batch, expansion, self._expansion_id)  # type: ignore[arg-type]  # set with query_expansion
            features = self.forward(batch, task, positions)
            tokens, keep = features[TOKENS], features["attention_mask"]
            if output_value is None:
                for row, i in enumerate(idx):
                    results[i] = {**{k: v[row] for k, v in batch.as_dict().items()},
                                  TOKENS: tokens[row], "attention_mask": keep[row]}  # fmt: skip
                    if positions is not None:
                        results[i]["query_expansion_positions"] = positions[row]
                continue
            rows = [tokens[row][keep[row]] for row in range(len(idx))]
            if self.modules.token_pooling is not None:
                rows = self.modules.token_pooling.pool(rows, task=task)
            if normalize_embeddings:
                rows = [l2_normalize(r) for r in rows]
            if token_pooling is not None:
                rows = token_pooling.pool(rows, task=task)
            for row, i in enumerate(idx):
                results[i] = _store(np.ascontiguousarray(rows[row], dtype=np.float32), precision)
        return results[0] if single else results

    # ----- similarity -------------------------------------------------------------------------------
    def similarity(self, embeddings1: Any, embeddings2: Any, **kwargs: Any) -> np.ndarray:
        """(n, m) MaxSim (or mean MaxSim) scores between two lists of per-token embeddings (lightembed.maxsim)."""
        fn = scoring.maxsim if self.similarity_fn_name == "maxsim" else scoring.mean_maxsim
        return fn(embeddings1, embeddings2, **kwargs)

    def similarity_pairwise(self, embeddings1: Any, embeddings2: Any, **kwargs: Any) -> np.ndarray:
        """(n,) MaxSim (or mean MaxSim) scores of each embeddings1[i] with embeddings2[i]."""
        fn = scoring.maxsim_pairwise if self.similarity_fn_name == "maxsim" else scoring.mean_maxsim_pairwise
        return fn(embeddings1, embeddings2, **kwargs)


    start_multi_process_pool = refusal(
        "start_multi_process_pool", "not yet for a MultiVectorEncoder: encode in one process (threads= sets its cores)"
    )

    def _repr_fields(self) -> dict[str, Any]:
        return {"max_seq_length": self.max_seq_length, "query_length": self.query_length,
                "document_length": self.document_length, "dim": self.get_embedding_dimension()}  # fmt: skip


def _text_max_length(processing_kwargs: dict[str, Any] | None) -> int | None:
    """encode(processing_kwargs={"text": {"max_length": N}}): the only per-call processing lightembed applies."""
    if not processing_kwargs:
        return None
    unknown = {k for k, v in processing_kwargs.items() if v and k != "text"}
    text = dict(processing_kwargs.get("text") or {})
    max_length = text.pop("max_length", None)
    if unknown or text:
        raise LightembedValueError(
            f"processing_kwargs {processing_kwargs!r}: lightembed applies only {{'text': {{'max_length': N}}}} "
            "(per-call truncation); the rest are the transformers processor's."
        )
    return None if max_length is None else check_int(max_length, "processing_kwargs['text']['max_length']")


def _store(row: np.ndarray, precision: str) -> np.ndarray:
    if precision == "float16":
        return row.astype(np.float16)
    if precision == "int8":
        return np.clip(np.rint(row * 127), -127, 127).astype(np.int8)
    return row

