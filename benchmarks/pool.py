"""One process with all cores against k pool workers x (cores/k) threads: the measurement behind the
multi-process pool's default target devices (lightembed/pool.py).

    python -m benchmarks.pool --model work/minilm [--file-name onnx/model.onnx] [--n 2000] [--rounds 3] [--ray]

Every variant embeds the same benchmark corpus (benchmarks.corpus.mixed(n): headlines, movie snippets and 10%
long news paragraphs) at batch size 32, in interleaved rounds; prints the median seconds, texts/s and the
ratio to the plain single-process encode, plus each pool's cold start (spawn + import + model load). The
pools stay started across rounds, so the timed part is what a long-running job pays per call. With `--ray`,
also a Ray Data job per k (a local `ray.init(num_cpus=cores + 1)`, k actors x cores/k CPUs, texts from
`ray.data.from_items`); each Ray round starts its actors, so those rows include the actors' start.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from benchmarks.corpus import mixed
from benchmarks.system import machine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--file-name", default=None)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=None, help="k values (default: 1, 2, 4 .. cores)")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--ray", action="store_true", help="also time Ray Data jobs with k actors")
    args = parser.parse_args(argv)

    import numpy as np

    from lightembed import SentenceTransformer
    from lightembed.machine import usable_cores

    cores = usable_cores()
    ks = args.workers or sorted({k for k in (1, 2, 4, 8, 16) if k <= cores} | {cores})
    texts = mixed(args.n)
    model = SentenceTransformer(args.model, device="cpu", file_name=args.file_name, threads=cores)
    model.encode(texts[:64])
    reference = model.encode(texts)

    pools: dict[str, Any] = {}
    cold: dict[str, float] = {}
    for k in ks:
        name = f"pool {k} x {max(1, cores // k)} threads"
        started = time.perf_counter()
        pools[name] = model.start_multi_process_pool(["cpu"] * k)
        cold[name] = time.perf_counter() - started
    variants: dict[str, Any] = {f"1 process x {cores} threads (plain encode)": lambda: model.encode(texts)}
    for name, pool in pools.items():
        variants[name] = lambda pool=pool: model.encode(texts, pool=pool)
    if args.ray:
        import ray

        from lightembed.integrations.ray import embed_dataset

        # One logical CPU beyond the cores: with every core held by actors, Ray has none left for its own tasks
        # and the job waits forever (its own warning says so); the actors still get cores/k threads each.
        ray.init(num_cpus=cores + 1, include_dashboard=False, log_to_driver=False, configure_logging=False)
        ray.data.DataContext.get_current().execution_options.preserve_order = True
        ray.data.DataContext.get_current().enable_progress_bars = False
        items = [{"text": t} for t in texts]

        def ray_job(k: int) -> Any:
            ds = ray.data.from_items(items, override_num_blocks=4 * k)
            out = embed_dataset(ds, args.model, concurrency=k, num_cpus=cores / k, batch_size=256,
                                file_name=args.file_name).to_arrow_refs()
            table = __import__("pyarrow").concat_tables(ray.get(out))
            col = table.column("embedding").combine_chunks()
            return col.flatten().to_numpy().reshape(len(col), -1)

        for k in ks:
            variants[f"ray {k} actor(s) x {max(1, cores // k)} CPUs"] = lambda k=k: ray_job(k)
    try:
        for fn in variants.values():  # warm-up, and a check that every variant gives the same vectors
            np.testing.assert_allclose(fn(), reference, rtol=1e-4, atol=1e-5)
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, fn in variants.items():
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    finally:
        for pool in pools.values():
            pool.close()
        if args.ray:
            ray.shutdown()

    base = statistics.median(next(iter(times.values())))
    rows = []
    for name, values in times.items():
        median = statistics.median(values)
        rows.append(
            {
                "variant": name,
                "median_s": round(median, 3),
                "texts_per_s": round(len(texts) / median, 1),
                "speed_vs_plain": round(base / median, 3),
                "cold_start_s": round(cold[name], 2) if name in cold else None,
            }
        )
    result = {"machine": machine(), "model": args.model, "file": str(model.onnx_path), "n": len(texts),
              "rounds": args.rounds, "rows": rows}
    print(json.dumps(result["machine"]))
    print(f"{'variant':<42} {'median s':>9} {'texts/s':>9} {'vs plain':>9} {'cold start s':>13}")
    for row in rows:
        cold_s = "" if row["cold_start_s"] is None else f"{row['cold_start_s']:.2f}"
        print(f"{row['variant']:<42} {row['median_s']:>9.3f} {row['texts_per_s']:>9.1f} "
              f"{row['speed_vs_plain']:>9.3f} {cold_s:>13}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
