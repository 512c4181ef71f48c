"""The export-free parts of a multi-vector (ColBERT) model, in NumPy: what sentence-transformers 6 does around the
transformer for `MultiVectorEncoder` (query expansion with mask tokens, the scoring mask with its skiplist, token
pooling) and reading a saved folder's multi-vector modules. lightembed.multi_vector_encoder runs them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lightembed.errors import LightembedValueError
from lightembed.modules import TOKENS, Dense, Normalize
from lightembed.tokenize import Batch


# ----- query expansion --------------------------------------------------------------------------------
def expand_queries(batch: Batch, expansion: dict[str, Any], token_id: int) -> tuple[Batch, np.ndarray]:
    """sentence-transformers 6.2's ColBERT query expansion of a padded query batch: widen it to at least
    `expansion["length"]` columns, put `token_id` (the mask token) on every padding position before that length
    and return those positions (batch, width) with the batch; `attend` also switches the attention on there."""
    floor = expansion["length"]
    ids, mask, types = batch.input_ids, batch.attention_mask, batch.token_type_ids
    if ids.shape[1] < floor:
        extra = ((0, 0), (0, floor - ids.shape[1]))
        ids, mask = np.pad(ids, extra), np.pad(mask, extra)
        types = None if types is None else np.pad(types, extra)
    positions = (mask == 0) & (np.arange(ids.shape[1]) < floor)[None, :]
    ids = np.where(positions, token_id, ids)
    if expansion["attend"]:
        mask = np.where(positions, 1, mask)
    return Batch(ids, mask, types, batch.lengths), positions


# ----- the scoring mask (MultiVectorMask) ------------------------------------------------------------
@dataclass
class ScoringMask:
    """sentence-transformers 6's MultiVectorMask: which token vectors a task keeps. Real tokens, plus the query
    expansion positions for queries; skiplist tokens dropped for `skiplist_tasks` (no task counts as
    "document"); for non-queries only `keep_only_token_ids` when set."""

    skiplist_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    skiplist_tasks: tuple[str, ...] = ("document",)
    keep_only_token_ids: np.ndarray | None = None

    @classmethod
    def from_config(cls, config: dict[str, Any], token_to_id: Any, unk_token: str | None) -> "ScoringMask":
        """From the module's config.json; skiplist words that are not one vocabulary token are dropped, as 6.2
        drops them (they would otherwise skip every [UNK])."""
        words = config.get("skiplist_words") or []
        ids = []
        for word in words:
            token_id = token_to_id(word)
            if token_id is not None and (word == unk_token or token_id != token_to_id(unk_token or "")):
                ids.append(token_id)
        tasks = config.get("skiplist_tasks")
        tasks = [tasks] if isinstance(tasks, str) else (tasks if tasks is not None else ["document"])
        keep = config.get("keep_only_token_ids")
        return cls(
            np.array(ids, dtype=np.int64),
            tuple(tasks),
            None if not keep else np.array(keep, dtype=np.int64),
        )

    def __call__(
        self, input_ids: np.ndarray, attention_mask: np.ndarray, task: str | None, expansion: np.ndarray | None
    ) -> np.ndarray:
        keep = attention_mask.astype(bool)
        if task == "query" and expansion is not None:
            keep |= expansion
        if (task or "document") in self.skiplist_tasks and self.skiplist_ids.size:
            keep &= ~np.isin(input_ids, self.skiplist_ids)
        if task != "query" and self.keep_only_token_ids is not None:
            keep &= np.isin(input_ids, self.keep_only_token_ids)
        return keep


# ----- token pooling ----------------------------------------------------------------------------------
class HierarchicalTokenPooling:
    """sentence-transformers 6's HierarchicalTokenPooling: Ward clustering (scipy) of each document's token vectors
    on cosine distance into tokens // pool_factor clusters, each replaced by its mean; the first
    `num_protected_tokens` are kept as they are; all rows L2-normalized when `normalize_embeddings`.
    Needs scipy (`pip install "lightembed[multi-vector]"`)."""

    def __init__(
        self,
        pool_factor: float = 1.0,
        *,
        num_protected_tokens: int = 1,
        normalize_embeddings: bool = True,
        tasks: str | Sequence[str] | None = None,
    ) -> None:
        if pool_factor < 1:
            raise LightembedValueError(f"pool_factor must be >= 1, got {pool_factor}.")
        if num_protected_tokens < 0:
            raise LightembedValueError(f"num_protected_tokens must be >= 0, got {num_protected_tokens}.")
        self.pool_factor = pool_factor
        self.num_protected_tokens = num_protected_tokens
        self.normalize_embeddings = normalize_embeddings
        self.tasks = [tasks] if isinstance(tasks, str) else list(tasks) if tasks is not None else ["document"]

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "HierarchicalTokenPooling":
        # A saved config without normalize_embeddings predates it: False, as 6.2 loads it.
        return cls(
            config.get("pool_factor", 1.0),
            num_protected_tokens=config.get("num_protected_tokens", 1),
            normalize_embeddings=config.get("normalize_embeddings", False),
            tasks=config.get("tasks"),
        )

    def applies_to(self, task: str | None) -> bool:
        """Whether inputs encoded for `task` are pooled (no task counts as "document")."""
        return (task or "document") in self.tasks

    def pool(self, embeddings: list[np.ndarray], *, task: str | None = None) -> list[np.ndarray]:
        """Each (tokens, dim) array pooled (unchanged for a task this pooling does not apply to)."""
        if not self.applies_to(task):
            return embeddings
        return [self.pool_one(e) for e in embeddings]

    def pool_one(self, embedding: np.ndarray) -> np.ndarray:
        """One document's (tokens, dim) vectors pooled to about tokens / pool_factor."""
        protected, to_pool = embedding[: self.num_protected_tokens], embedding[self.num_protected_tokens :]
        clusters = max(int(len(to_pool) // self.pool_factor), 1)
        if self.pool_factor > 1 and clusters < len(to_pool):
            try:
                from scipy.cluster import hierarchy
                from scipy.spatial.distance import squareform
            except ImportError:  # pragma: no cover - scipy is in the extra
                raise ImportError(
                    'HierarchicalTokenPooling needs scipy: pip install "lightembed[multi-vector]"'
                ) from None
            x = to_pool.astype(np.float32)
            distances = np.clip(1 - x @ x.T, 0, 2)
            linkage = hierarchy.linkage(squareform(distances, checks=False), method="ward")
            labels = hierarchy.fcluster(linkage, t=clusters, criterion="maxclust") - 1
            _, inverse = np.unique(labels, return_inverse=True)
            sums = np.zeros((inverse.max() + 1, to_pool.shape[1]), dtype=to_pool.dtype)
            np.add.at(sums, inverse, to_pool)
            pooled = sums / np.bincount(inverse)[:, None].astype(to_pool.dtype)
            embedding = np.concatenate([protected, pooled.astype(embedding.dtype)])
        if self.normalize_embeddings:
            norms = np.linalg.norm(embedding.astype(np.float32), axis=-1, keepdims=True)
            embedding = (embedding / np.maximum(norms, 1e-12)).astype(embedding.dtype)
        return embedding


# ----- the saved folder --------------------------------------------------------------------------------
_LEGACY_DENSE = "pylate.models.Dense.Dense"


@dataclass
class MultiVectorModules:
    """The modules after a multi-vector model's Transformer: token-level Dense/Normalize (in order), the scoring
    mask and the token pooling."""

    token_modules: list[Any] = field(default_factory=list)
    mask: ScoringMask | None = None
    token_pooling: HierarchicalTokenPooling | None = None


def read_multi_vector_modules(
    entries: list[tuple[str, Path, str]], modules_path: Path, token_to_id: Any, unk_token: str | None
) -> tuple[Path, MultiVectorModules]:
    """(transformer folder, modules) from modules.json entries; a module a multi-vector model does not run is
    refused by name."""
    from lightembed.config import read_json, refuse_module

    transformer_dir: Path | None = None
    found = MultiVectorModules()
    for kind, path, type_name in entries:
        if found.token_pooling is not None:
            raise LightembedValueError(f"{modules_path}: lightembed runs token pooling as the last module; {type_name!r} follows it.")
        if kind == "Transformer":
            if transformer_dir is not None:
                raise LightembedValueError(f"{modules_path} lists more than one Transformer module.")
            transformer_dir = path
        elif kind == "Dense":
            config = read_json(path / "config.json")
            dense = Dense.from_dir(path) if "module_input_name" in config else _token_dense(path)
            found.token_modules.append(dense)
        elif kind == "Normalize":
            found.token_modules.append(Normalize.from_dir(path))
        elif kind == "MultiVectorMask":
            found.mask = ScoringMask.from_config(read_json(path / "config.json"), token_to_id, unk_token)
        elif kind == "HierarchicalTokenPooling":
            found.token_pooling = HierarchicalTokenPooling.from_config(read_json(path / "config.json"))
        else:
            raise refuse_module(
                type_name, modules_path, "Transformer, Dense, Normalize, MultiVectorMask, HierarchicalTokenPooling"
            )
    if transformer_dir is None:
        raise LightembedValueError(f"{modules_path} lists no Transformer module.")
    for module in found.token_modules:
        if module.input_name != TOKENS or module.output_name != TOKENS:
            raise LightembedValueError(
                f"{modules_path}: a multi-vector model's {type(module).__name__} must read and write "
                f"token_embeddings, got {module.input_name!r} -> {module.output_name!r}."
            )
    return transformer_dir, found


def _token_dense(path: Path) -> Dense:
    """A Dense saved before module IO names (PyLate, sentence-transformers < 5.4): on token embeddings, as 6.2
    loads it into a multi-vector model."""
    dense = Dense.from_dir(path)
    dense.input_name = dense.output_name = TOKENS
    return dense
