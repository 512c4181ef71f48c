"""sentence-transformers' own `backend="openvino"` against its torch fp32 and `.bfloat16()`, interleaved, in one
process of a separate venv (it needs optimum-intel, whose pins do not fit the exporter's optimum):
`python -m venv v && v/bin/pip install torch==2.13.0 "sentence-transformers[openvino]"`.
benchmarks/amx.py calls it with `--st-openvino-python v/bin/python` and maps its ratios through its own torch rows.

    v/bin/python benchmarks/st_openvino.py TORCH_DIR TEXTS.json OUT.npz [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import numpy as np
from peer_args import peer_parser  # beside this script on sys.path


def main(argv: list[str] | None = None) -> int:
    parser = peer_parser(__doc__.splitlines()[0], "the sentence-transformers (torch) folder")
    args = parser.parse_args(argv)
    import torch
    from sentence_transformers import SentenceTransformer, __version__

    torch.set_num_threads(args.threads)
    texts = json.loads(open(args.texts, encoding="utf-8").read())
    models = {
        "st_torch_fp32": SentenceTransformer(args.source, device="cpu"),
        "st_torch_bf16": SentenceTransformer(args.source, device="cpu").bfloat16(),
        "st_openvino": SentenceTransformer(
            args.source,
            device="cpu",
            backend="openvino",
            model_kwargs={"ov_config": {"NUM_STREAMS": "1", "INFERENCE_NUM_THREADS": str(args.threads)}},
        ),
    }
    seconds: dict[str, list[float]] = {k: [] for k in models}
    embeddings = {}
    for _ in range(args.repeats):
        for key, model in models.items():
            start = time.perf_counter()
            out = model.encode(texts, batch_size=args.batch_size, convert_to_numpy=False)
            seconds[key].append(time.perf_counter() - start)
            embeddings[key] = np.stack([v.float().cpu().numpy() for v in out]).astype(np.float32)
    np.savez(args.out, **embeddings)
    import openvino

    print(json.dumps({"sentence-transformers": __version__, "openvino": openvino.__version__,
                      "median_s": {k: statistics.median(v) for k, v in seconds.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
