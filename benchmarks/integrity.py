"""What checking the ONNX file against lightembed.json costs at load: fresh processes, interleaved.

    python -m benchmarks.integrity --model DIR [--file onnx/model.onnx] [--runs 7]

Each run starts a new Python, imports lightembed and times SentenceTransformer(DIR, file_name=...) with
verify=True and verify=False alternately; prints the medians, their difference and the time to hash the file
alone.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

_CHILD = """
import json, sys, time
from lightembed import SentenceTransformer
t = time.perf_counter()
SentenceTransformer(sys.argv[1], device="cpu", file_name=sys.argv[2], verify=sys.argv[3] == "1")
print(json.dumps(time.perf_counter() - t))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--file", default="onnx/model.onnx")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)
    from benchmarks.system import machine
    from lightembed.graphs.integrity import sha256_of

    times: dict[str, list[float]] = {"verify=True": [], "verify=False": []}
    for _ in range(args.runs):
        for flag, name in (("1", "verify=True"), ("0", "verify=False")):
            out = subprocess.run([sys.executable, "-c", _CHILD, args.model, args.file, flag], capture_output=True,
                                 text=True, check=True)
            times[name].append(json.loads(out.stdout))
    t = time.perf_counter()
    sha256_of(Path(args.model) / args.file)
    hash_s = time.perf_counter() - t
    on, off = statistics.median(times["verify=True"]), statistics.median(times["verify=False"])
    size = (Path(args.model) / args.file).stat().st_size / 2**20
    print(f"{args.file} ({size:.0f} MiB), {args.runs} fresh processes each, load time medians:")
    print(f"  verify=True  {on * 1000:7.1f} ms   {[round(x * 1000) for x in times['verify=True']]}")
    print(f"  verify=False {off * 1000:7.1f} ms   {[round(x * 1000) for x in times['verify=False']]}")
    print(f"  difference   {(on - off) * 1000:7.1f} ms ({on / off:.2f}x); sha256 alone (warm cache): {hash_s * 1000:.1f} ms")
    print(f"  cpu: {machine().get('cpu', {}).get('model')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
