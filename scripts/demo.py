"""Semantic search over real Guardian headlines with lightembed (no torch imported)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.corpus import headlines  # noqa: E402
from lightembed import SentenceTransformer, util  # noqa: E402

QUERIES = [
    "central bank raises interest rates",
    "vaccine trial results",
    "football club sacks its manager",
    "wildfires and extreme heat",
]


def main(model_dir: str) -> None:
    corpus = headlines()[:3000]
    files = sorted(p.relative_to(model_dir).as_posix() for p in Path(model_dir).glob("onnx/*.onnx"))
    embedded = {}
    for file_name in files:  # fp32, O3 and the int8 file picked for this CPU
        model = SentenceTransformer(model_dir, device="cpu", file_name=file_name)
        start = time.perf_counter()
        embedded[file_name] = model.encode(corpus, batch_size=64)
        took = time.perf_counter() - start
        print(f"\n{file_name}: {len(corpus)} headlines in {took:.1f} s ({len(corpus) / took:.0f} texts/s)")
    model = SentenceTransformer(model_dir, device="cpu")  # search with the fp32 file, onnx/model.onnx
    corpus_emb = embedded[model.onnx_path.relative_to(model_dir).as_posix()]
    query_emb = model.encode(QUERIES)
    hits = util.semantic_search(query_emb, corpus_emb, top_k=3)
    for query, row in zip(QUERIES, hits):
        print(f"\nQuery: {query}")
        for hit in row:
            print(f"  {hit['score']:.3f}  {' '.join(corpus[hit['corpus_id']].split())}")
    heavy = [m for m in ("torch", "transformers", "optimum", "sentence_transformers") if m in sys.modules]
    print(f"\nheavy modules imported by this process: {heavy or 'none'}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "work/all-MiniLM-L6-v2")
