"""BGE-M3: its two heads written into the exported graph, and their check against torch.

A BGE-M3 checkpoint (BAAI/bge-m3) is a sentence-transformers folder (XLM-RoBERTa, CLS pooling, Normalize) with two
extra torch files beside it that only FlagEmbedding reads: `sparse_linear.pt` (Linear(hidden, 1): one lexical
weight per token) and `colbert_linear.pt` (Linear(hidden, dim): one vector per token). The exporter reads them here
(torch, weights only) and appends to the graph, after `last_hidden_state`, the three outputs FlagEmbedding computes
(lightembed.bge_m3 names them): the normalized CLS vector, relu(sparse_linear(h)) per token, and
normalize(colbert_linear(h[:, 1:]) * mask[:, 1:]). The runtime then has all three from one run of the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lightembed.bge_m3 import COLBERT_OUTPUT, DENSE_OUTPUT, HEAD_FILES, SPARSE_OUTPUT, has_head_files
from lightembed_export.errors import SourceError
from lightembed_export.pooled import HIDDEN_OUTPUT, NodeBuilder

_PREFIX = "lightembed_bge_m3/"
_EPS = 1e-12
"""torch.nn.functional.normalize's eps: x / max(||x||, eps)."""

__all__ = ["Heads", "add_heads", "compare", "has_head_files", "load_heads", "reference", "write_heads"]


@dataclass(frozen=True)
class Heads:
    """BGE-M3's two linear heads as float32 arrays (torch's Linear layout: weight (out, in), bias (out,))."""

    sparse_weight: np.ndarray
    sparse_bias: np.ndarray
    colbert_weight: np.ndarray
    colbert_bias: np.ndarray

    @property
    def colbert_dim(self) -> int:
        return int(self.colbert_weight.shape[0])

    def describe(self) -> dict[str, Any]:
        """The heads' shapes, for lightembed.json."""
        return {
            "files": list(HEAD_FILES),
            "sparse_linear": list(self.sparse_weight.shape),
            "colbert_linear": list(self.colbert_weight.shape),
            "outputs": [DENSE_OUTPUT, SPARSE_OUTPUT, COLBERT_OUTPUT],
        }


def load_heads(folder: Path, hidden_size: int) -> Heads:
    """The two heads of the BGE-M3 checkpoint in `folder` (torch state dicts of nn.Linear, read with
    weights_only=True); SourceError naming the file when one is not a Linear(hidden_size, ...) of the expected
    width."""
    import torch

    arrays: list[np.ndarray] = []
    for name, width in zip(HEAD_FILES, (1, None), strict=True):
        path = folder / name
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # a damaged pickle raises whatever its unpickler raises
            raise SourceError(f"{path} could not be read as a torch state dict: {exc}") from None
        weight, bias = (state.get(key) if isinstance(state, dict) else None for key in ("weight", "bias"))
        if not isinstance(weight, torch.Tensor) or not isinstance(bias, torch.Tensor):
            raise SourceError(f"{path} is not the state dict of a torch Linear layer (needs 'weight' and 'bias').")
        out = width or int(weight.shape[0])
        if tuple(weight.shape) != (out, hidden_size) or tuple(bias.shape) != (out,):
            raise SourceError(
                f"{path} holds a Linear of weight {tuple(weight.shape)} and bias {tuple(bias.shape)}; BGE-M3's "
                f"needs weight ({out}, {hidden_size}) and bias ({out},) for the transformer's hidden size {hidden_size}."
            )
        arrays += [weight.detach().float().numpy(), bias.detach().float().numpy()]
    return Heads(*arrays)


def write_heads(path: Path, heads: Heads, external_data: bool = False) -> None:
    """add_heads() on the ONNX file at `path`, saved in place (its data file kept, or written with
    `external_data`); UnsupportedModelError when the graph has no last_hidden_state and attention_mask to read."""
    import onnx

    from lightembed_export.errors import UnsupportedModelError
    from lightembed_export.onnx_files import save_model_file

    model = onnx.load(str(path), load_external_data=False)
    if not add_heads(model, heads):
        raise UnsupportedModelError(
            f"{path.name} has no {HIDDEN_OUTPUT} and attention_mask (or has BGE-M3's outputs already), so BGE-M3's "
            "heads cannot be appended to it"
        )
    save_model_file(model, path, external_data)


def add_heads(model: Any, heads: Heads) -> bool:
    """Append the dense, sparse and multi-vector outputs to a loaded feature-extraction ModelProto, in memory;
    False (the model unchanged) when it lacks `last_hidden_state` or `attention_mask`, or has the outputs already."""
    from onnx import TensorProto, helper

    found = NodeBuilder.after_hidden(model, DENSE_OUTPUT, _PREFIX)
    if found is None:
        return False
    b, hidden = found
    graph = model.graph
    h = HIDDEN_OUTPUT
    if hidden.type.tensor_type.elem_type != TensorProto.FLOAT:
        h = b.node("Cast", [h], "hidden_float", to=TensorProto.FLOAT)
    mask = b.node("Cast", ["attention_mask"], "mask", to=TensorProto.FLOAT)

    cls = b.node("Gather", [h, b.const("zero", np.array(0, dtype=np.int64))], "cls", axis=1)
    dense = _normalize(b, cls, "dense")

    scores = b.node("MatMul", [h, b.const("sparse_weight_t", heads.sparse_weight.T.copy())], "sparse_matmul")
    scores = b.node("Add", [scores, b.const("sparse_bias", heads.sparse_bias)], "sparse_add")
    scores = b.node("Relu", [scores], "sparse_relu")
    sparse = b.axes_op("Squeeze", scores, [2], "sparse", 13)

    start, end, axis = (b.const(n, np.array([v], dtype=np.int64)) for n, v in
                        (("start", 1), ("end", np.iinfo(np.int64).max), ("axis", 1)))  # fmt: skip
    tail = b.node("Slice", [h, start, end, axis], "tokens_after_cls")
    tail_mask = b.axes_op("Unsqueeze", b.node("Slice", [mask, start, end, axis], "mask_after_cls"), [2], "mask3", 13)
    vecs = b.node("MatMul", [tail, b.const("colbert_weight_t", heads.colbert_weight.T.copy())], "colbert_matmul")
    vecs = b.node("Add", [vecs, b.const("colbert_bias", heads.colbert_bias)], "colbert_add")
    colbert = _normalize(b, b.node("Mul", [vecs, tail_mask], "colbert_masked"), "colbert")

    b.append_to(graph)
    dims = hidden.type.tensor_type.shape.dim
    batch: Any = (dims[0].dim_param or dims[0].dim_value or "batch_size") if dims else "batch_size"
    seq: Any = (dims[1].dim_param or dims[1].dim_value or "sequence_length") if len(dims) > 1 else "sequence_length"
    width: Any = (dims[-1].dim_value or "hidden_size") if dims else "hidden_size"
    shapes = {DENSE_OUTPUT: [batch, width], SPARSE_OUTPUT: [batch, seq],
              COLBERT_OUTPUT: [batch, "colbert_length", heads.colbert_dim]}  # fmt: skip
    for name, source in ((DENSE_OUTPUT, dense), (SPARSE_OUTPUT, sparse), (COLBERT_OUTPUT, colbert)):
        graph.node.append(helper.make_node("Identity", [source], [name], name=_PREFIX + name))
        graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shapes[name]))
    return True


def _normalize(b: NodeBuilder, x: str, out: str) -> str:
    """x / max(||x||_2, eps) over the last axis, as torch.nn.functional.normalize."""
    norm = b.axes_op("ReduceL2", x, [-1], out + "_norm", 18, keepdims=1)
    norm = b.node("Max", [norm, b.const(out + "_eps", np.array(_EPS, dtype=np.float32))], out + "_norm_eps")
    return b.node("Div", [x, norm], out + "_normalized")


# ----- the torch reference and the comparison -------------------------------------------------------------
@dataclass(frozen=True)
class Reference:
    """FlagEmbedding's three outputs for the probes, computed on torch from the sentence-transformers model's
    transformer and the two heads."""

    dense: np.ndarray
    lexical_weights: list[dict[str, float]]
    colbert: list[np.ndarray]
    vocab_size: int


def reference(torch_model: Any, heads: Heads, probes: Sequence[str], batch_size: int = 8) -> Reference:
    """BGE-M3's outputs on `probes` by FlagEmbedding's formulas: the normalized CLS hidden state; per token
    relu(sparse_linear(h)), special tokens (cls, eos, pad, unk) dropped and each token id's largest positive weight
    kept (keys are str(token id), as FlagEmbedding's); normalize(colbert_linear(h[:, 1:]) * mask[:, 1:]), the first
    (real tokens - 1) rows kept."""
    import torch

    transformer = torch_model[0]
    tokenizer = transformer.tokenizer
    unused = {tokenizer.convert_tokens_to_ids(tokenizer.special_tokens_map[t])
              for t in ("cls_token", "eos_token", "pad_token", "unk_token") if t in tokenizer.special_tokens_map}  # fmt: skip
    sparse_w, sparse_b = torch.from_numpy(heads.sparse_weight), torch.from_numpy(heads.sparse_bias)
    colbert_w, colbert_b = torch.from_numpy(heads.colbert_weight), torch.from_numpy(heads.colbert_bias)
    dense: list[np.ndarray] = []
    lexical: list[dict[str, float]] = []
    colbert: list[np.ndarray] = []
    with torch.no_grad():
        for start in range(0, len(probes), batch_size):
            features = torch_model.tokenize(list(probes[start : start + batch_size]))
            features = {k: v for k, v in features.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
            hidden = transformer.auto_model(**features, return_dict=True).last_hidden_state.float()
            mask = features["attention_mask"]
            dense.append(torch.nn.functional.normalize(hidden[:, 0], dim=-1).numpy())
            weights = torch.relu(hidden @ sparse_w.T + sparse_b).squeeze(-1).numpy()
            vecs = (hidden[:, 1:] @ colbert_w.T + colbert_b) * mask[:, 1:, None].float()
            vecs = torch.nn.functional.normalize(vecs, dim=-1).numpy()
            for row, ids in enumerate(features["input_ids"].tolist()):
                kept: dict[str, float] = {}
                for token_id, weight in zip(ids, weights[row].tolist(), strict=True):
                    if token_id not in unused and weight > 0 and weight > kept.get(str(token_id), 0.0):
                        kept[str(token_id)] = weight
                lexical.append(kept)
                colbert.append(vecs[row, : int(mask[row].sum()) - 1])
    vocab = int(getattr(transformer.auto_model.config, "vocab_size", 0) or 0)
    return Reference(np.concatenate(dense), lexical, colbert, vocab)


def lexical_matrix(rows: Sequence[dict[str, float]], vocab_size: int) -> np.ndarray:
    """Lexical-weight dicts as a dense (n, vocab) array (for the cosine comparison)."""
    out = np.zeros((len(rows), vocab_size), dtype=np.float64)
    for i, row in enumerate(rows):
        for key, value in row.items():
            out[i, int(key)] = value
    return out


def compare(ref: Reference, model_dir: Path, file_name: str, threshold: Any) -> dict[str, Any]:
    """lightembed.BGEM3Model on `file_name` against `ref`: each output's metrics (verify.compare /
    compare_multi_vector), whether every output clears `threshold` (the file's Threshold), and the error if not."""
    from lightembed.bge_m3 import BGEM3Model
    from lightembed_export.verify import PROBES, compare as compare_rows, compare_multi_vector

    try:
        model = BGEM3Model(str(model_dir), device="cpu", file_name=file_name)
        got = model.encode(list(PROBES), batch_size=8, max_length=model.max_seq_length, return_dense=True,
                           return_sparse=True, return_colbert_vecs=True)  # truncated as the reference's texts
        metrics = {
            "dense": compare_rows(ref.dense, got["dense_vecs"]),
            "sparse": compare_rows(lexical_matrix(ref.lexical_weights, ref.vocab_size),
                                   lexical_matrix(got["lexical_weights"], ref.vocab_size)),  # fmt: skip
            "colbert": compare_multi_vector(ref.colbert, got["colbert_vecs"]),
        }
    except Exception as exc:  # the runtime rejecting the file is a verification failure of that file
        return {"metrics": None, "passed": False, "error": f"BGE-M3 outputs: {type(exc).__name__}: {exc}"}
    failed = [name for name, m in metrics.items() if not threshold.passes(m[threshold.metric])]
    error = None
    if failed:
        error = "BGE-M3 outputs " + ", ".join(
            f"{name} ({threshold.metric} {metrics[name][threshold.metric]:.6g})" for name in failed
        ) + f" miss {threshold.metric} {threshold.bound} {threshold.value}"
    return {"metrics": metrics, "passed": not failed, "error": error}
