"""Folders and reference vectors made by sentence-transformers 6.2 itself, for the parity tests of lightembed's
reading of 6.x folders (tests/test_st6.py).

Run as `python -m tests.st6 OUT CASE...` with the sentence-transformers 6 venv (`.venv-st6`, made by
scripts/setup.sh; the main venv holds 5.x). Each case builds a tiny seeded BERT with transformers, wraps it in
sentence-transformers 6.2 modules, saves the model to OUT/CASE, exports the transformer to OUT/CASE/onnx/model.onnx
with torch.onnx.export, and writes what 6.2 on torch gives to OUT/CASE/reference.npz. `python -m tests.st6 --names`
prints 6.2's public names (for tests/test_api_surface.py).
"""

from __future__ import annotations

import json
import string
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

TEXTS = [
    "the cat sat on the mat",
    "a dog ran in the park, quick!",
    "hello world",
    "how do i reset my password? " * 3,
    "quick brown fox jumps over the lazy dog",
]
QUERIES = ["how do i reset my password?", "quick fox", "hello, world"]
DOCUMENTS = TEXTS


def export_onnx(transformer: Any, folder: Path) -> None:
    """The transformer's last_hidden_state as onnx/model.onnx (TorchScript exporter, dynamic batch and length)."""
    import torch

    model = transformer.auto_model.eval()
    tokenizer = transformer.tokenizer
    batch = tokenizer(["hello world", "the cat sat on the mat"], padding=True, return_tensors="pt")
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in batch]

    class Wrapped(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *args: Any) -> Any:
            return self.model(**dict(zip(names, args))).last_hidden_state

    (folder / "onnx").mkdir(parents=True, exist_ok=True)
    axes = {n: {0: "batch", 1: "seq"} for n in names}
    axes["last_hidden_state"] = {0: "batch", 1: "seq"}
    with torch.no_grad():
        torch.onnx.export(
            Wrapped(), tuple(batch[n] for n in names), str(folder / "onnx" / "model.onnx"), input_names=names,
            output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=17, dynamo=False,
        )  # fmt: skip


def write_tokenizer(folder: Path, padding_side: str = "right") -> int:
    """A lower-casing WordPiece tokenizer (BERT's normalizer and pre-tokenizer) over tests.families' vocabulary,
    built with `tokenizers` (transformers 5's BertTokenizerFast no longer reads a vocab_file); returns its size."""
    from transformers import PreTrainedTokenizerFast

    from tests.families import wordpiece_tokenizer

    tok = wordpiece_tokenizer()
    vocab = tok.get_vocab()
    PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", padding_side=padding_side, model_max_length=128,
    ).save_pretrained(str(folder))  # fmt: skip
    return len(vocab)


def _bert(folder: Path, seed: int = 0, padding_side: str = "right") -> Path:
    """A tiny seeded BertModel with write_tokenizer's tokenizer, saved by transformers in folder/_hf."""
    import torch
    from transformers import BertConfig, BertModel

    from tests.families import HIDDEN, INIT_RANGE

    hf = folder / "_hf"
    vocab = write_tokenizer(hf, padding_side)
    config = BertConfig(
        initializer_range=INIT_RANGE, vocab_size=vocab, hidden_size=HIDDEN, num_hidden_layers=2,
        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128,
    )  # fmt: skip
    torch.manual_seed(seed)
    BertModel(config).eval().save_pretrained(str(hf))
    return hf


def _sentence_transformer(folder: Path, build: Callable[[Any, Any], list], padding_side: str = "right",
                          **kwargs: Any) -> dict[str, np.ndarray]:  # fmt: skip
    import shutil

    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules

    hf = _bert(folder, padding_side=padding_side)
    transformer = modules.Transformer(str(hf), max_seq_length=24)
    torch.manual_seed(1)
    model = SentenceTransformer(modules=build(transformer, modules), device="cpu", **kwargs)
    model.save(str(folder), create_model_card=False)
    export_onnx(transformer, folder)
    shutil.rmtree(hf)
    refs = {"texts": model.encode(TEXTS), "queries": model.encode_query(QUERIES)}
    tokens = model.encode(TEXTS, output_value="token_embeddings")
    refs["tokens"] = np.concatenate(tokens)
    refs["token_lengths"] = np.array([len(t) for t in tokens])
    if kwargs.get("prompts"):
        refs["prompted"] = model.encode(TEXTS, prompt_name="query")
    return refs


def residual(folder: Path) -> dict[str, np.ndarray]:
    """Dense(use_residual=True), same width (input added as is) and narrower (through `residual`)."""
    import torch

    return _sentence_transformer(folder, lambda t, m: [
        t, m.Pooling(32, "mean"), m.Dense(32, 32, use_residual=True),
        m.Dense(32, 16, use_residual=True, activation_function=torch.nn.Identity()), m.Normalize(),
    ])  # fmt: skip


def normalize_tokens(folder: Path) -> dict[str, np.ndarray]:
    """Normalize(module_input_name="token_embeddings") before Pooling."""
    return _sentence_transformer(folder, lambda t, m: [
        t, m.Normalize(module_input_name="token_embeddings"), m.Pooling(32, "mean"),
    ])  # fmt: skip


def token_dense(folder: Path) -> dict[str, np.ndarray]:
    """A Dense on token embeddings before Pooling (max and mean), then a Dense and a LayerNorm on the sentence
    embedding, and a Normalize that writes the token embeddings after Pooling (changing only
    output_value="token_embeddings")."""
    import torch

    return _sentence_transformer(folder, lambda t, m: [
        t, m.Dense(32, 24, module_input_name="token_embeddings", activation_function=torch.nn.Identity()),
        m.Pooling(24, ("max", "mean")), m.Dense(48, 8), _layer_norm(m.LayerNorm(8)),
        m.Normalize(module_input_name="token_embeddings"),
    ])  # fmt: skip


def _layer_norm(module: Any) -> Any:
    """A LayerNorm with seeded weights (its default is the identity affine)."""
    import torch

    with torch.no_grad():
        module.norm.weight.uniform_(0.5, 1.5)
        module.norm.bias.uniform_(-0.2, 0.2)
    return module


def weightedmean_left(folder: Path) -> dict[str, np.ndarray]:
    """weightedmean pooling on a left-padding tokenizer, with a prompt left out of pooling."""
    return _sentence_transformer(
        folder, lambda t, m: [t, m.Pooling(32, "weightedmean", include_prompt=False)], padding_side="left",
        prompts={"query": "query passage "},
    )  # fmt: skip


def _multi_vector(folder: Path, build: Callable[[Any, Any], list], **kwargs: Any) -> dict[str, np.ndarray]:
    import shutil

    import torch
    from sentence_transformers import MultiVectorEncoder
    from sentence_transformers.base import modules as base
    from sentence_transformers.multi_vector_encoder import modules as mv

    hf = _bert(folder)
    torch.manual_seed(1)
    model = MultiVectorEncoder(modules=build(str(hf), (base, mv)), device="cpu", **kwargs)
    model.save(str(folder), create_model_card=False)
    export_onnx(model[0], folder)
    shutil.rmtree(hf)
    queries = model.encode_query(QUERIES, convert_to_numpy=True)
    documents = model.encode_document(DOCUMENTS, convert_to_numpy=True)
    plain = model.encode(TEXTS, convert_to_numpy=True)
    refs: dict[str, np.ndarray] = {
        "query_lengths": np.array([len(q) for q in queries]),
        "document_lengths": np.array([len(d) for d in documents]),
        "plain_lengths": np.array([len(p) for p in plain]),
        "queries": np.concatenate(queries),
        "documents": np.concatenate(documents),
        "plain": np.concatenate(plain),
        "scores": model.similarity(queries, documents).numpy(),
        "pairwise": model.similarity_pairwise(queries, documents[: len(queries)]).numpy(),
    }
    return refs


def multi_vector(folder: Path) -> dict[str, np.ndarray]:
    """A ColBERT-style model: prompts, query_length/document_length, fixed query expansion with [MASK], a
    punctuation skiplist on documents, a bias-free projection and a token-level Normalize."""
    import torch

    def build(path: str, m: Any) -> list:
        base, mv = m
        transformer = base.Transformer(path, max_seq_length=32, query_length=10, document_length=12,
                                       query_expansion={"strategy": "fixed", "length": 10})  # fmt: skip
        return [
            transformer, base.Dense(32, 16, bias=False, activation_function=torch.nn.Identity(),
                                    module_input_name="token_embeddings"),  # fmt: skip
            mv.MultiVectorMask(skiplist_words=list(string.punctuation)),
            base.Normalize(module_input_name="token_embeddings"),
        ]

    return _multi_vector(folder, build, prompts={"query": "query ", "document": "passage "})


def multi_vector_min(folder: Path) -> dict[str, np.ndarray]:
    """Query expansion "min" that the encoder attends to, a skiplist on queries too, mean MaxSim, and token
    pooling (HierarchicalTokenPooling, pool_factor 2) baked into the pipeline for documents."""
    import torch

    def build(path: str, m: Any) -> list:
        base, mv = m
        transformer = base.Transformer(path, max_seq_length=32,
                                       query_expansion={"strategy": "min", "attend": True, "length": 8})  # fmt: skip
        return [
            transformer, base.Dense(32, 16, activation_function=torch.nn.Identity(),
                                    module_input_name="token_embeddings", use_residual=True),  # fmt: skip
            mv.MultiVectorMask(skiplist_words=[",", "?", "!"], skiplist_tasks=["query", "document"]),
            base.Normalize(module_input_name="token_embeddings"),
            mv.HierarchicalTokenPooling(pool_factor=2),
        ]

    return _multi_vector(folder, build, similarity_fn_name="meanmaxsim")


def maxsim_scores(folder: Path) -> dict[str, np.ndarray]:
    """6.2's util.maxsim family on seeded ragged inputs (an empty document among them), on a padded 3-D batch
    (all-zero rows are padding), with masks, with a tiny chunk budget, and on int8 inputs."""
    import torch
    from sentence_transformers import util

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    queries = [rng.standard_normal((n, 8)).astype(np.float32) for n in (3, 5, 1)]
    documents = [rng.standard_normal((n, 8)).astype(np.float32) for n in (4, 0, 7, 2)]
    padded = np.zeros((4, 7, 8), dtype=np.float32)
    for i, d in enumerate(documents):
        padded[i, : len(d)] = d
    b_mask = (rng.random((4, 7)) > 0.3).astype(np.float32)
    a_mask = [np.array([1, 0, 1]), np.array([1, 1, 1, 0, 1]), np.array([1])]
    q8 = [np.clip(np.rint(q * 40), -127, 127).astype(np.int8) for q in queries]
    t = [torch.from_numpy(q) for q in queries]
    refs = {f"query{i}": q for i, q in enumerate(queries)} | {f"document{i}": d for i, d in enumerate(documents)}
    refs.update(
        padded=padded, b_mask=b_mask, **{f"a_mask{i}": m for i, m in enumerate(a_mask)},
        maxsim=util.maxsim(queries, documents).numpy(),
        mean_maxsim=util.mean_maxsim(queries, documents).numpy(),
        padded_maxsim=util.maxsim(queries, padded).numpy(),
        masked_maxsim=util.maxsim(queries, padded, a_mask=a_mask, b_mask=torch.from_numpy(b_mask)).numpy(),
        chunked=util.maxsim(t, documents, chunk_elements=10).numpy(),
        single=util.maxsim(queries[0], documents[2]).numpy(),
        pairwise=util.maxsim_pairwise(queries, documents[:3]).numpy(),
        mean_pairwise=util.mean_maxsim_pairwise(queries, [documents[0], documents[2], documents[3]]).numpy(),
        int8=util.maxsim([q.astype(np.int8) for q in q8], documents).numpy(),
        **{f"q8_{i}": q for i, q in enumerate(q8)},
    )  # fmt: skip
    return refs


PARAPHRASE_CASES = [
    (60, 8, dict(top_k=5)),
    (60, 8, dict(top_k=5, query_chunk_size=7, corpus_chunk_size=11)),
    (60, 8, dict(top_k=5, max_pairs=50)),
    (60, 8, dict(top_k=5, max_pairs=51, query_chunk_size=9, corpus_chunk_size=13)),
    (40, 16, dict(top_k=100)),  # top_k larger than the data
    (200, 32, dict(top_k=3, query_chunk_size=64, corpus_chunk_size=50, max_pairs=300)),
    (100, 8, dict(top_k=3, corpus_chunk_size=10)),
    (100, 8, dict(top_k=3, max_pairs=20)),
    (2, 4, dict()),
    (1, 4, dict()),
    (0, 4, dict()),
]
"""(rows, dim, keyword arguments) of util.paraphrase_mining_embeddings calls compared with 6.2."""


def paraphrase_embeddings(n: int, dim: int) -> np.ndarray:
    """Seeded Gaussian rows of about unit norm (the same in both venvs)."""
    rng = np.random.default_rng(n * 10 + dim)
    return (rng.standard_normal((n, dim)) / max(dim, 1) ** 0.5).astype(np.float32)


def paraphrase(folder: Path) -> dict[str, np.ndarray]:
    """6.2's util.paraphrase_mining_embeddings on PARAPHRASE_CASES with cosine, dot and euclidean scores."""
    from sentence_transformers import util

    folder.mkdir(parents=True, exist_ok=True)
    refs = {}
    for case, (n, dim, kw) in enumerate(PARAPHRASE_CASES):
        for score in ("cos_sim", "dot_score", "euclidean_sim"):
            pairs = util.paraphrase_mining_embeddings(
                paraphrase_embeddings(n, dim), score_function=getattr(util, score), **kw
            )
            refs[f"{case}_{score}"] = np.array(pairs, dtype=np.float64).reshape(-1, 3)
    return refs


QUANTIZE_SHAPES = [(50, 16), (3, 13), (1, 384)]
PRECISIONS = ["float32", "int8", "uint8", "binary", "ubinary"]


def quantize_inputs(shape: tuple[int, int], calib: str, dtype: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Seeded embeddings and the calibration keyword ("self": none, "calibration" or "ranges")."""
    rng = np.random.default_rng(shape[0] * shape[1])
    emb = (rng.standard_normal(shape) / shape[1] ** 0.5).astype(dtype)
    if calib == "calibration":
        return emb, {"calibration_embeddings": (rng.standard_normal((200, shape[1])) / shape[1] ** 0.5).astype(dtype)}
    if calib == "ranges":
        return emb, {"ranges": np.vstack([np.full(shape[1], -1.0), np.full(shape[1], 1.5)]).astype(dtype)}
    return emb, {}


def quantize(folder: Path) -> dict[str, np.ndarray]:
    """6.2's util.quantize_embeddings on the grid of shapes x calibrations x dtypes x precisions ("error" where
    6.2 raises), and on a list of (tokens, dim) arrays (multi-vector)."""
    from sentence_transformers import util

    folder.mkdir(parents=True, exist_ok=True)
    refs: dict[str, np.ndarray] = {}
    for shape in QUANTIZE_SHAPES:
        for calib in ("self", "calibration", "ranges"):
            for dtype in ("float32", "float64"):
                emb, kw = quantize_inputs(shape, calib, dtype)
                for precision in PRECISIONS:
                    key = f"{shape[0]}x{shape[1]}_{calib}_{dtype}_{precision}"
                    try:
                        refs[key] = util.quantize_embeddings(emb, precision, **kw)
                    except ValueError:
                        refs[key] = np.array("error")
    emb, _ = quantize_inputs((50, 16), "self", "float32")
    for precision in PRECISIONS:
        out = util.quantize_embeddings([emb[:20], emb[20:23], emb[23:]], precision)
        refs.update({f"list_{precision}_{i}": part for i, part in enumerate(out)})
        refs[f"rows_{precision}"] = util.quantize_embeddings(emb.tolist(), precision)
    return refs


def static(folder: Path) -> dict[str, np.ndarray]:
    """A StaticEmbedding (6.x's module path in modules.json) then Normalize, with a Matryoshka truncate_dim of 8."""
    import shutil

    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules
    from tokenizers import Tokenizer

    write_tokenizer(folder / "_tokenizer")
    tokenizer = Tokenizer.from_file(str(folder / "_tokenizer" / "tokenizer.json"))
    torch.manual_seed(2)
    model = SentenceTransformer(
        modules=[modules.StaticEmbedding(tokenizer, embedding_dim=16), modules.Normalize()], device="cpu", truncate_dim=8
    )
    model.save(str(folder), create_model_card=False)
    shutil.rmtree(folder / "_tokenizer")
    return {"texts": model.encode(TEXTS), "queries": model.encode_query(QUERIES)}


CASES: dict[str, Callable[[Path], dict[str, np.ndarray]]] = {
    f.__name__: f
    for f in (residual, normalize_tokens, token_dense, weightedmean_left, multi_vector, multi_vector_min, maxsim_scores,
              paraphrase, quantize, static)
}


def public_names() -> dict[str, list[str]]:
    """6.2's public names: of each model class (less torch's Module internals and PEFT adapters) and of util."""
    import torch
    import sentence_transformers as st
    from sentence_transformers import util
    from sentence_transformers.base.peft_mixin import PeftAdapterMixin  # there in 5.7 and 6.2

    torch_internal = set(dir(torch.nn.Sequential))
    peft = set(dir(PeftAdapterMixin)) - set(dir(object))
    calls = {"to", "cuda", "cpu", "half", "float", "bfloat16", "double", "eval", "train"}
    names: dict[str, list[str]] = {}
    classes = ("SentenceTransformer", "CrossEncoder", "SparseEncoder", "MultiVectorEncoder")
    for cls in (getattr(st, c) for c in classes if hasattr(st, c)):
        public = {n for n in dir(cls) if not n.startswith("_")}
        names[cls.__name__] = sorted((public - torch_internal - peft) | (calls & public))
    names["util"] = sorted(n for n in getattr(util, "__all__", dir(util)) if not n.startswith("_"))
    names["sentence_transformers"] = sorted(n for n in st.__all__ if not n.startswith("_"))
    return names


def main(argv: list[str]) -> None:
    if argv[:1] == ["--names"]:
        print(json.dumps(public_names()))
        return
    out = Path(argv[0])
    for name in argv[1:] or list(CASES):
        folder = out / name
        refs = CASES[name](folder)
        np.savez(folder / "reference.npz", **refs)
    print("ok")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main(sys.argv[1:])
