"""BGE-M3 (BAAI/bge-m3): dense, sparse (lexical) and multi-vector (ColBERT) outputs of one graph run, with
FlagEmbedding's `BGEM3FlagModel` API.

The exporter (lightembed-export) writes BGE-M3's two heads into the ONNX file, beside `last_hidden_state`:
`dense_vecs` (batch, hidden), the L2-normalized CLS state; `sparse_vecs` (batch, seq), relu(sparse_linear(h)) per
token; `colbert_vecs` (batch, seq - 1, dim), normalize(colbert_linear(h[:, 1:]) * mask[:, 1:]). What FlagEmbedding
does after its model runs is done here in NumPy: lexical weights keep each token id's largest positive weight and
drop the special tokens (cls, eos, pad, unk), keyed by str(token id) as FlagEmbedding keys them; multi-vector rows
keep the first (real tokens - 1) vectors.

The same folder also loads as `SentenceTransformer` (the dense vector, through its Pooling(cls) + Normalize
modules), `SparseEncoder` (the lexical weights as sparse vocabulary-sized embeddings) and `MultiVectorEncoder`
(the ColBERT vectors): each class reads the output it needs (`has_heads`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np

from lightembed.base import EmbeddingModel, ModelSetup
from lightembed.config import read_json, read_modules, read_transformer_settings
from lightembed.errors import LightembedTypeError, LightembedValueError
from lightembed.inputs import as_text_list, check_batch_size, check_int
from lightembed.progress import progress
from lightembed.tokenize import Batch, _token_str, plan_batches, token_counts
from lightembed.unsupported import refusal

__all__ = ["BGEM3Model"]

HEAD_FILES = ("sparse_linear.pt", "colbert_linear.pt")
"""The torch files beside a BGE-M3 checkpoint's transformer (read by the exporter only, never at runtime)."""
DENSE_OUTPUT = "dense_vecs"
SPARSE_OUTPUT = "sparse_vecs"
COLBERT_OUTPUT = "colbert_vecs"
OUTPUTS = (DENSE_OUTPUT, SPARSE_OUTPUT, COLBERT_OUTPUT)
_SPECIAL_TOKENS = ("cls_token", "eos_token", "pad_token", "unk_token")
DEFAULT_MAX_LENGTH = 512
"""FlagEmbedding's query_max_length and passage_max_length."""


def has_head_files(folder: Path) -> bool:
    """Whether `folder` is a BGE-M3 checkpoint: both head files beside its transformer."""
    return all((Path(folder) / name).is_file() for name in HEAD_FILES)


def has_heads(graph: Any) -> bool:
    """Whether an open graph has BGE-M3's three outputs."""
    return all(name in graph.output_names for name in OUTPUTS)


def sparse_encoder_of(model: Any) -> Any | None:
    """A SparseEncoder of the lexical weights on the same open graph as `model` (a loaded model of a BGE-M3
    folder: no second session is kept), or None when its file has no BGE-M3 outputs."""
    if not has_heads(model._graph):
        return None
    from lightembed.sparse_encoder import SparseEncoder

    sparse = SparseEncoder(str(model.model_dir), device=model.device, file_name=model.runtime_info.onnx_file,
                           verify=False, max_batch_tokens=model.max_batch_tokens)  # fmt: skip
    sparse._opened = model._opened  # the session just opened is released: both read one graph
    return sparse


def special_token_ids(transformer_dir: Path, token_to_id: Any) -> np.ndarray:
    """The ids of the cls, eos, pad and unk tokens that tokenizer_config.json (or special_tokens_map.json) names:
    the tokens FlagEmbedding leaves out of the lexical weights."""
    config = read_json(transformer_dir / "tokenizer_config.json")
    specials = read_json(transformer_dir / "special_tokens_map.json")
    ids = set()
    for key in _SPECIAL_TOKENS:
        token = _token_str(config.get(key)) or _token_str(specials.get(key))
        token_id = token_to_id(token) if token else None
        if token_id is not None:
            ids.add(int(token_id))
    return np.array(sorted(ids), dtype=np.int64)


def lexical_rows(
    weights: np.ndarray, input_ids: np.ndarray, lengths: np.ndarray, unused_ids: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per row of a padded batch, (token ids ascending, weights): each id's largest positive weight among the row's
    `lengths` real tokens, the `unused_ids` left out."""
    rows = []
    for row in range(len(weights)):
        ids, w = input_ids[row, : lengths[row]], weights[row, : lengths[row]]
        keep = (w > 0) & ~np.isin(ids, unused_ids)
        ids, w = ids[keep], w[keep]
        order = np.lexsort((-w, ids))  # by id, the largest weight first
        ids, w = ids[order], w[order]
        first = np.concatenate(([True], ids[1:] != ids[:-1])) if ids.size else np.zeros(0, dtype=bool)
        rows.append((ids[first].astype(np.int64), w[first].astype(np.float32)))
    return rows


def lexical_dict(ids: np.ndarray, weights: np.ndarray) -> dict[str, float]:
    """FlagEmbedding's lexical-weights form of a row: {str(token id): weight}."""
    return {str(int(i)): float(w) for i, w in zip(ids, weights)}


def colbert_rows(vectors: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    """The multi-vector rows of a padded batch: the first (real tokens - 1) vectors of each (the CLS is not
    among them)."""
    return [np.ascontiguousarray(vectors[row, : max(int(lengths[row]) - 1, 0)]) for row in range(len(vectors))]


def lexical_matching_score(weights_1: Mapping[str, float], weights_2: Mapping[str, float]) -> float:
    """Sum over the tokens both have of weight_1 * weight_2 (FlagEmbedding's compute_lexical_matching_score)."""
    return float(sum(w * weights_2[token] for token, w in weights_1.items() if token in weights_2))


def colbert_score(query: np.ndarray, passage: np.ndarray) -> float:
    """MaxSim averaged over the query's vectors: mean over query vectors of the best dot product with a passage
    vector (FlagEmbedding's colbert_score); 0 for a query without vectors."""
    query, passage = np.asarray(query, dtype=np.float32), np.asarray(passage, dtype=np.float32)
    if len(query) == 0 or len(passage) == 0:
        return 0.0
    return float((query @ passage.T).max(axis=1).sum() / len(query))


class BGEM3Model(EmbeddingModel):
    """BGE-M3 exported to ONNX, with FlagEmbedding's `BGEM3FlagModel` API: `encode(texts, return_dense=True,
    return_sparse=True, return_colbert_vecs=True)` gives all three outputs from one run of the graph per batch,
    `compute_score(pairs)` FlagEmbedding's hybrid scores.

    `model_name_or_path` is a folder (or Hub repo id) that lightembed-export wrote from a BGE-M3 checkpoint.
    `device`, `providers`, `threads`, `file_name`, `max_batch_tokens`, `verify`, `backend`, `preoptimized`,
    `spinning` and `model_kwargs` (`ov_config`) work as for `SentenceTransformer`. FlagEmbedding's `use_fp16` and
    `devices` are accepted: the file picks the precision (`file_name`), `devices` one device. The graph normalizes the dense and ColBERT vectors and pools by CLS, as
    BGE-M3 does; `normalize_embeddings=False` or another `pooling_method` is refused.
    """

    _preferred_outputs = (DENSE_OUTPUT,)
    _default_similarity = None

    def __init__(
        self,
        model_name_or_path: str | Path,
        device: str | None = None,
        *,
        normalize_embeddings: bool = True,
        use_fp16: bool = False,
        pooling_method: str = "cls",
        batch_size: int = 256,
        query_max_length: int = DEFAULT_MAX_LENGTH,
        passage_max_length: int = DEFAULT_MAX_LENGTH,
        return_dense: bool = True,
        return_sparse: bool = False,
        return_colbert_vecs: bool = False,
        devices: str | Sequence[str] | None = None,
        file_name: str | None = None,
        revision: str | None = None,
        cache_folder: str | None = None,
        local_files_only: bool = False,
        token: bool | str | None = None,
        providers: Sequence[Any] | None = None,
        threads: int | None = None,
        max_batch_tokens: int | Literal["auto"] | None = "auto",
        verify: bool | None = None,
        backend: str | None = None,
        preoptimized: bool | None = None,
        spinning: bool | None = None,
        model_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs:
            raise LightembedTypeError(f"BGEM3Model() got unexpected keyword arguments: {sorted(kwargs)}.")
        if not normalize_embeddings or pooling_method != "cls":
            raise LightembedValueError(
                "BGEM3Model runs the graph lightembed-export wrote, which pools by CLS and normalizes the dense and "
                f"ColBERT vectors (BGE-M3's setting); normalize_embeddings={normalize_embeddings!r} with "
                f"pooling_method={pooling_method!r} would need another export."
            )
        del use_fp16  # the file is the precision: pass file_name= for an fp16 or int8 file
        if devices is not None:
            listed = [devices] if isinstance(devices, str) else list(devices)
            if len(listed) != 1:
                raise LightembedValueError(f"BGEM3Model runs on one device; got devices={devices!r}.")
            device = device or listed[0]
        self.batch_size = check_batch_size(batch_size)
        self.query_max_length = check_int(query_max_length, "query_max_length")
        self.passage_max_length = check_int(passage_max_length, "passage_max_length")
        self.return_dense, self.return_sparse, self.return_colbert_vecs = return_dense, return_sparse, return_colbert_vecs
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
            max_batch_tokens=max_batch_tokens,
            verify=verify,
            backend=backend,
            preoptimized=preoptimized,
            spinning=spinning,
            model_kwargs=model_kwargs,
        )
        if self.tokenizer_wrapper.padding_side != "right":  # the graph's ColBERT head drops column 0 as the CLS
            raise LightembedValueError(
                f"{self.model_dir}'s tokenizer pads on the {self.tokenizer_wrapper.padding_side}; BGE-M3's outputs "
                "need the CLS token first in every row (right padding, as XLM-RoBERTa's)."
            )

    def _setup(self) -> ModelSetup:
        folder = self.model_dir
        missing = [name for name in OUTPUTS if name not in self._graph.output_names]
        if missing:
            raise LightembedValueError(
                f"{self.onnx_path} has no BGE-M3 outputs {missing} (it has {self._graph.output_names}): export the "
                "BGE-M3 checkpoint (with sparse_linear.pt and colbert_linear.pt beside it) with lightembed-export."
            )
        entries = read_modules(folder) or []
        transformer_dir = next((path for kind, path, _ in entries if kind == "Transformer"), folder)
        settings = read_transformer_settings(transformer_dir, folder)
        from tokenizers import Tokenizer as HFTokenizer

        backend = HFTokenizer.from_file(str(transformer_dir / "tokenizer.json"))
        self.unused_token_ids = special_token_ids(transformer_dir, backend.token_to_id)
        """The token ids left out of the lexical weights (cls, eos, pad, unk)."""
        return ModelSetup(transformer_dir, settings, {}, None, None)

    # ----- encoding ---------------------------------------------------------------------------------
    def forward(
        self, batch: Batch, return_dense: bool = True, return_sparse: bool = True, return_colbert_vecs: bool = True
    ) -> dict[str, Any]:
        """The requested outputs of one padded batch from one graph run: dense_vecs (rows, dim), lexical_weights
        (one {str(token id): weight} per row), colbert_vecs (one (tokens - 1, dim) array per row)."""
        wanted = [name for name, on in zip(OUTPUTS, (return_dense, return_sparse, return_colbert_vecs)) if on]
        out = self._graph.run(batch.as_dict(), wanted) if wanted else {}
        result: dict[str, Any] = {}
        if return_dense:
            result["dense_vecs"] = out[DENSE_OUTPUT]
        if return_sparse:
            rows = lexical_rows(out[SPARSE_OUTPUT], batch.input_ids, batch.lengths, self.unused_token_ids)
            result["lexical_weights"] = [lexical_dict(ids, w) for ids, w in rows]
        if return_colbert_vecs:
            result["colbert_vecs"] = colbert_rows(out[COLBERT_OUTPUT], batch.lengths)
        return result

    def encode(
        self,
        sentences: str | Sequence[str] | None = None,
        batch_size: int | None = None,
        max_length: int | None = None,
        return_dense: bool | None = None,
        return_sparse: bool | None = None,
        return_colbert_vecs: bool | None = None,
        show_progress_bar: bool | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        """FlagEmbedding's encode: {"dense_vecs": (n, dim) array, "lexical_weights": [{str(token id): weight}],
        "colbert_vecs": [(tokens - 1, dim) array]}, each None unless requested (defaults: the constructor's
        return_* settings), for one string its single row. Texts are truncated at `max_length` tokens (default
        passage_max_length, 512)."""
        if sentences is None:
            sentences = kwargs.pop("queries", None)
        kwargs.pop("convert_to_numpy", None)
        if kwargs:
            raise LightembedTypeError(f"encode() got keyword arguments it does not use: {sorted(kwargs)}.")
        flags = [self.return_dense if return_dense is None else return_dense,
                 self.return_sparse if return_sparse is None else return_sparse,
                 self.return_colbert_vecs if return_colbert_vecs is None else return_colbert_vecs]  # fmt: skip
        texts, single = as_text_list(sentences)
        batch_size = check_batch_size(self.batch_size if batch_size is None else batch_size)
        length = self.passage_max_length if max_length is None else check_int(max_length, "max_length")
        tokenizer = self.tokenizer_wrapper.truncating_at(length)
        encodings = tokenizer.encode(texts)
        dense: list[Any] = [None] * len(texts)
        lexical: list[Any] = [None] * len(texts)
        colbert: list[Any] = [None] * len(texts)
        plan = plan_batches(token_counts(encodings), batch_size, self.max_batch_tokens)
        for idx in progress(plan, bool(show_progress_bar), "Batches", total=len(plan)):
            out = self.forward(tokenizer.pad([encodings[i] for i in idx]), *flags)
            for row, i in enumerate(idx):
                if flags[0]:
                    dense[i] = out["dense_vecs"][row]
                if flags[1]:
                    lexical[i] = out["lexical_weights"][row]
                if flags[2]:
                    colbert[i] = out["colbert_vecs"][row]
        width = self._graph.output_width or 0
        result: dict[str, Any] = {
            "dense_vecs": (np.stack(dense) if dense else np.zeros((0, width), np.float32)) if flags[0] else None,
            "lexical_weights": lexical if flags[1] else None,
            "colbert_vecs": colbert if flags[2] else None,
        }
        if single:
            result = {key: None if value is None else value[0] for key, value in result.items()}
        return result

    def encode_queries(self, queries: str | Sequence[str], max_length: int | None = None, **kwargs: Any) -> dict[str, Any]:
        """encode() truncating at query_max_length unless `max_length` is given."""
        return self.encode(queries, max_length=self.query_max_length if max_length is None else max_length, **kwargs)

    def encode_corpus(self, corpus: str | Sequence[str], max_length: int | None = None, **kwargs: Any) -> dict[str, Any]:
        """encode() truncating at passage_max_length unless `max_length` is given."""
        return self.encode(corpus, max_length=self.passage_max_length if max_length is None else max_length, **kwargs)

    # ----- scores -----------------------------------------------------------------------------------
    @staticmethod
    def compute_lexical_matching_score(weights_1: Any, weights_2: Any) -> float | np.ndarray:
        """The lexical matching score of two lexical-weight dicts (a float), or of two lists of them (an (n, m)
        array)."""
        if isinstance(weights_1, Mapping) and isinstance(weights_2, Mapping):
            return lexical_matching_score(weights_1, weights_2)
        if isinstance(weights_1, list) and isinstance(weights_2, list):
            return np.array([[lexical_matching_score(a, b) for b in weights_2] for a in weights_1])
        raise LightembedTypeError("compute_lexical_matching_score takes two lexical-weight dicts or two lists of them.")

    @staticmethod
    def colbert_score(q_reps: np.ndarray, p_reps: np.ndarray) -> float:
        """MaxSim of a query's vectors against a passage's, averaged over the query's vectors."""
        return colbert_score(q_reps, p_reps)

    def compute_score(
        self,
        sentence_pairs: Sequence[tuple[str, str]] | tuple[str, str],
        batch_size: int | None = None,
        max_query_length: int | None = None,
        max_passage_length: int | None = None,
        weights_for_different_modes: Sequence[float] | None = None,
    ) -> dict[str, Any]:
        """FlagEmbedding's hybrid scores of (query, passage) pairs: {"colbert", "sparse", "dense", "sparse+dense",
        "colbert+sparse+dense"}, each a list with one score per pair (a float for one pair). dense is the dot
        product of the dense vectors, sparse the lexical matching score, colbert MaxSim averaged over the query's
        vectors; the combinations weigh them by `weights_for_different_modes` [dense, sparse, colbert] (default
        [1, 1, 1]) and divide by the weights' sum. Queries are truncated at max_query_length, passages at
        max_passage_length (default: the constructor's)."""
        if isinstance(sentence_pairs, str) or not isinstance(sentence_pairs, (tuple, list)):
            raise LightembedTypeError(
                f"sentence_pairs must be a (query, passage) pair or a list of them, got {type(sentence_pairs).__name__}."
            )
        single = len(sentence_pairs) == 2 and all(isinstance(s, str) for s in sentence_pairs)
        pairs: list[Any] = [tuple(sentence_pairs)] if single else list(sentence_pairs)
        for i, pair in enumerate(pairs):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2 or not all(isinstance(s, str) for s in pair):
                raise LightembedTypeError(f"sentence_pairs[{i}] must be a (query, passage) pair of strings.")
        weights = [1.0, 1.0, 1.0] if weights_for_different_modes is None else [float(w) for w in weights_for_different_modes]
        if len(weights) != 3 or sum(weights) == 0 or sum(weights[:2]) == 0:
            raise LightembedValueError(
                f"weights_for_different_modes must be three weights [dense, sparse, colbert] with non-zero sums, got "
                f"{weights_for_different_modes!r}."
            )
        q, p = (
            self.encode([pair[side] for pair in pairs], batch_size, length or default, True, True, True)
            for side, length, default in ((0, max_query_length, self.query_max_length),
                                          (1, max_passage_length, self.passage_max_length))
        )  # fmt: skip
        dense = [float(a @ b) for a, b in zip(q["dense_vecs"], p["dense_vecs"])]
        sparse = [lexical_matching_score(a, b) for a, b in zip(q["lexical_weights"], p["lexical_weights"])]
        colbert = [colbert_score(a, b) for a, b in zip(q["colbert_vecs"], p["colbert_vecs"])]
        w_dense, w_sparse, w_colbert = weights
        scores: dict[str, Any] = {
            "colbert": colbert,
            "sparse": sparse,
            "dense": dense,
            "sparse+dense": [(s * w_sparse + d * w_dense) / (w_sparse + w_dense) for d, s in zip(dense, sparse)],
            "colbert+sparse+dense": [
                (c * w_colbert + s * w_sparse + d * w_dense) / sum(weights) for d, s, c in zip(dense, sparse, colbert)
            ],
        }
        return {key: value[0] for key, value in scores.items()} if single else scores

    def convert_id_to_token(self, lexical_weights: Any) -> Any:
        """Lexical weights keyed by token text instead of token id (one dict, or a list of dicts)."""
        rows = [lexical_weights] if isinstance(lexical_weights, Mapping) else list(lexical_weights)
        backend = self.tokenizer_wrapper.backend
        converted = [{backend.decode([int(key)]): weight for key, weight in row.items()} for row in rows]
        return converted[0] if len(converted) == 1 else converted

    start_multi_process_pool = refusal(
        "start_multi_process_pool", "not yet for BGEM3Model: encode in one process (threads= sets its cores)"
    )

    def get_embedding_dimension(self) -> int | None:
        """The width of the dense vector."""
        return self._graph.output_width

    def _repr_fields(self) -> dict[str, Any]:
        return {"max_seq_length": self.max_seq_length, "dim": self.get_embedding_dimension()}
