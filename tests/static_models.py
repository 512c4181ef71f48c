"""Tiny seeded static-embedding folders built at test time by the libraries that define them: a
sentence-transformers `StaticEmbedding` model (saved by sentence-transformers, torch needed) and model2vec
`StaticModel` folders (saved by model2vec), over a WordPiece tokenizer of tests/families.py's vocabulary."""

from __future__ import annotations

from pathlib import Path

import numpy as np

TEXTS = [
    "the cat sat on the mat",
    "",
    "Grüße 🎉 北京 Hello, World!",  # characters the vocabulary lacks: unknown tokens
    "how do i reset my password? " * 3,
    "quick brown fox " * 40,
    "   ",
]


def _tokenizer(folder: Path, truncation: int | None = None):
    """tests.families' WordPiece tokenizer, truncating at `truncation` when given (`folder` is unused: the libraries
    save the tokenizer with the model)."""
    from tests.families import wordpiece_tokenizer

    tok = wordpiece_tokenizer()
    if truncation:
        tok.enable_truncation(truncation)
    return tok


def sentence_transformers_static(
    folder: Path, seed: int = 0, normalize: bool = True, dim: int = 16, truncation: int | None = None,
    truncate_dim: int | None = None,
) -> Path:
    """A StaticEmbedding (random seeded table) then, with `normalize`, Normalize; saved by sentence-transformers."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, StaticEmbedding

    torch.manual_seed(seed)
    modules = [StaticEmbedding(_tokenizer(folder, truncation), embedding_dim=dim)]
    if normalize:
        modules.append(Normalize())
    model = SentenceTransformer(modules=modules, device="cpu", truncate_dim=truncate_dim)
    out = folder / "static"
    model.save(str(out))
    return out


def model2vec_static(
    folder: Path, seed: int = 0, normalize: bool = True, max_length: int | None = 8, quantized: bool = False
) -> Path:
    """A model2vec StaticModel with a random seeded table, saved by model2vec; `quantized`: a table of 7 rows with
    a token-to-row mapping and per-token weights (what model2vec's vocabulary quantization writes)."""
    from model2vec import StaticModel

    tok = _tokenizer(folder)
    vocab = tok.get_vocab_size()
    rng = np.random.default_rng(seed)
    extra = {}
    rows = vocab
    if quantized:
        rows = 7
        extra = {"weights": rng.random(vocab).astype(np.float32),
                 "token_mapping": rng.integers(0, rows, vocab).astype(np.int64)}  # fmt: skip
    table = rng.standard_normal((rows, 12)).astype(np.float32)
    model = StaticModel(table, tok, normalize=normalize, max_length=max_length, **extra)
    out = folder / "model2vec"
    model.save_pretrained(str(out))
    return out


def router_model(folder: Path, seed: int = 0) -> Path:
    """A sentence-transformers Router, as static-retrieval-style asymmetric models are built: queries through a
    StaticEmbedding, documents through a tiny seeded BERT with mean Pooling, then Normalize for both (default
    route: document); saved by sentence-transformers."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules.router import Router

    from tests.families import _st_modules, bert

    models = _st_modules()
    hf = bert(folder / "bert-hf", seed)
    transformer = models.Transformer(str(hf), max_seq_length=24)
    torch.manual_seed(seed)
    static = models.StaticEmbedding(_tokenizer(folder), embedding_dim=transformer.get_embedding_dimension())
    router = Router.for_query_document(
        query_modules=[static], document_modules=[transformer, models.Pooling(transformer.get_embedding_dimension())]
    )
    out = folder / "router"
    SentenceTransformer(modules=[router, models.Normalize()], device="cpu").save(str(out))
    return out


def sparse_router(folder: Path, seed: int = 0) -> Path:
    """An inference-free SPLADE model as sentence-transformers builds a SparseEncoder Router: queries through a
    SparseStaticEmbedding (seeded positive weights, as IDF), documents through a tiny seeded BERT masked LM and
    SpladePooling (max, relu); default route: document; saved by sentence-transformers."""
    import torch
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sparse_encoder.modules import Router, SparseStaticEmbedding, SpladePooling, Transformer
    from transformers import AutoTokenizer

    from tests.families import bert

    hf = bert(folder / "mlm-hf", seed, head="BertForMaskedLM")
    transformer = Transformer(str(hf), max_seq_length=24, transformer_task="fill-mask")
    tokenizer = AutoTokenizer.from_pretrained(str(hf))
    torch.manual_seed(seed)
    weight = torch.rand(len(tokenizer.get_vocab())) + 0.1  # every token weighs something, as IDF does
    query = SparseStaticEmbedding(tokenizer=tokenizer, weight=weight, frozen=True)
    router = Router.for_query_document(query_modules=[query], document_modules=[transformer, SpladePooling("max")])
    out = folder / "sparse-router"
    SparseEncoder(modules=[router], device="cpu").save(str(out))
    return out


def static_router(folder: Path, seed: int = 0) -> Path:
    """A Router of two StaticEmbedding routes (query, document) then Normalize, saved by sentence-transformers."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules.router import Router

    from tests.families import _st_modules

    models = _st_modules()
    torch.manual_seed(seed)
    query, document = (models.StaticEmbedding(_tokenizer(folder / name), embedding_dim=16) for name in ("q", "d"))
    router = Router.for_query_document(query_modules=[query], document_modules=[document])
    out = folder / "static-router"
    SentenceTransformer(modules=[router, models.Normalize()], device="cpu").save(str(out))
    return out
