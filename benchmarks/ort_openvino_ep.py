"""onnxruntime's OpenVINO execution provider against onnxruntime's CPU provider, interleaved, in one process.

The `onnxruntime-openvino` wheel replaces the `onnxruntime` module, so it cannot sit in lightembed's own
environment: run this with the Python of a separate venv (`python -m venv v && v/bin/pip install
onnxruntime-openvino numpy tokenizers`). Both rows use the same bare pipeline (tokenizers, batch of 32, mean
pooling in NumPy), so their ratio is the providers'. benchmarks/amx.py calls it and writes the embeddings it
returns into its fidelity column.

    v/bin/python benchmarks/ort_openvino_ep.py MODEL_DIR TEXTS.json OUT.npz [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort
from peer_args import peer_parser  # beside this script on sys.path
from tokenizers import Tokenizer


def session(path: str, provider: str, threads: int, options: dict | None = None) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = [(provider, options or {})] if provider != "CPUExecutionProvider" else [provider]
    return ort.InferenceSession(path, so, providers=providers)


def encode(sess: ort.InferenceSession, tok: Tokenizer, texts: list[str], batch: int) -> np.ndarray:
    names = [i.name for i in sess.get_inputs()]
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out = np.zeros((len(texts), 0), dtype=np.float32)
    rows = []
    for start in range(0, len(order), batch):
        idx = order[start : start + batch]
        enc = tok.encode_batch([texts[i] for i in idx])
        arrays = {
            "input_ids": np.array([e.ids for e in enc], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64),
        }
        (pooled,) = sess.run(["sentence_embedding"], {k: arrays[k] for k in names})
        rows.append((idx, pooled / np.linalg.norm(pooled, axis=1, keepdims=True)))
    out = np.zeros((len(texts), rows[0][1].shape[1]), dtype=np.float32)
    for idx, vecs in rows:
        out[idx] = vecs
    return out


def main(argv: list[str] | None = None) -> int:
    parser = peer_parser(__doc__.splitlines()[0], "the exported model folder")
    args = parser.parse_args(argv)
    texts = json.loads(open(args.texts, encoding="utf-8").read())
    tok = Tokenizer.from_file(f"{args.source}/tokenizer.json")
    tok.enable_truncation(max_length=256)
    tok.enable_padding()
    path = f"{args.source}/onnx/model.onnx"
    variants = {"ort_cpu_fp32": session(path, "CPUExecutionProvider", args.threads)}
    available = ort.get_available_providers()
    if "OpenVINOExecutionProvider" in available:
        # num_of_threads is the EP's own thread count; no precision option: OpenVINO's CPU default (bf16 on AMX).
        variants["ort_ov_ep_default"] = session(
            path, "OpenVINOExecutionProvider", args.threads, {"device_type": "CPU", "num_of_threads": str(args.threads)}
        )
        variants["ort_ov_ep_accuracy"] = session(
            path,
            "OpenVINOExecutionProvider",
            args.threads,
            {"device_type": "CPU", "num_of_threads": str(args.threads), "precision": "ACCURACY"},
        )
    seconds: dict[str, list[float]] = {k: [] for k in variants}
    embeddings: dict[str, np.ndarray] = {}
    for key, sess in variants.items():  # warm-up
        encode(sess, tok, texts[: args.batch_size], args.batch_size)
    keys = list(variants)
    for round_no in range(args.repeats):
        shift = round_no % len(keys)
        for key in keys[shift:] + keys[:shift]:
            started = time.perf_counter()
            emb = encode(variants[key], tok, texts, args.batch_size)
            seconds[key].append(time.perf_counter() - started)
            embeddings.setdefault(key, emb)
            print(f"[ort-ep] round {round_no + 1} {key:<20} {seconds[key][-1]:7.2f} s", file=sys.stderr, flush=True)
    np.savez(args.out, **embeddings)
    print(
        json.dumps(
            {
                "onnxruntime": ort.__version__,
                "providers": available,
                "median_s": {k: statistics.median(v) for k, v in seconds.items()},
                "seconds": seconds,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
