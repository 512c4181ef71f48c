"""Thread spinning and thread count on a quiet and on a loaded CPU: the measurement behind session.SPINNING.

    python -m benchmarks.spinning --model DIR [--n 2000] [--rounds 3] [--burners 0 1 2]

Each variant (threads 1/2 x spinning on/off) encodes the same real headlines at batch size 32, in interleaved
rounds, while `--burners` other processes each keep one core busy (0: a quiet machine). Prints the median
seconds and the ratio to the default (all usable cores, spinning as the runtime sets it) for each load.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import time
from typing import Any

from benchmarks.corpus import headlines
from benchmarks.system import machine


def _burn(stop: Any) -> None:
    x = 0
    while not stop.is_set():
        for _ in range(100000):
            x += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--burners", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)

    from lightembed import SentenceTransformer
    from lightembed.machine import usable_cores

    texts = headlines()[: args.n]
    cores = usable_cores()
    variants = {}
    for threads in sorted({1, cores}):
        for spin in (True, False):
            model = SentenceTransformer(args.model, device="cpu", threads=threads)
            from lightembed.graphs.onnxruntime import OnnxGraph, create_session

            model._graph = OnnxGraph(create_session(model.onnx_path, ["CPUExecutionProvider"], threads, spin),
                                     model._preferred_outputs)
            variants[f"threads={threads} spinning={'on' if spin else 'off'}"] = model
    for model in variants.values():
        model.encode(texts[:64])
    results: dict[str, Any] = {"machine": machine(), "n": len(texts), "loads": {}}
    for burners in args.burners:
        stop = mp.Event()
        procs = [mp.Process(target=_burn, args=(stop,), daemon=True) for _ in range(burners)]
        for p in procs:
            p.start()
        try:
            times: dict[str, list[float]] = {name: [] for name in variants}
            for _ in range(args.rounds):
                for name, model in variants.items():
                    t0 = time.perf_counter()
                    model.encode(texts, batch_size=32)
                    times[name].append(time.perf_counter() - t0)
        finally:
            stop.set()
            for p in procs:
                p.join(5)
        med = {name: statistics.median(v) for name, v in times.items()}
        base = med[f"threads={cores} spinning=on"]
        print(f"\n{burners} busy process(es) beside the benchmark ({cores} usable cores):")
        for name, m in med.items():
            print(f"  {name:28s} {m:7.2f} s   x default {base / m:5.2f}   rounds {['%.2f' % t for t in times[name]]}")
        results["loads"][str(burners)] = {"median_s": med, "rounds_s": times}
    print(json.dumps(results["machine"].get("cpu", {}), default=str)[:300])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
