"""Issue 13, AVX2-only CPUs: what each file computes when onnxruntime dispatches its AVX2 kernels, on a machine
that has AVX-512/AMX, by running the encoder under QEMU's x86-64 user-mode emulator with an AVX2-only CPU model.

onnxruntime picks its kernels from CPUID, which `qemu-x86_64-static -cpu Haswell` answers as a Haswell (AVX2 +
FMA, no AVX-512, no VNNI, no AMX), so the int8 GEMMs take the AVX2 paths an AMD Zen 3 or an older Xeon takes.
Emulation makes the timings meaningless (TCG runs the model ~100x slower), so this measures fidelity only: each
int8 file's embeddings under the emulated AVX2 dispatch against native fp32 embeddings of the same texts, next to
the same file run natively (fp32 itself is only run natively: it is the reference). The pre-optimized copies are turned off in the emulated runs (they were made for this CPU's flags,
which lightembed reads from /proc/cpuinfo, the host's even under QEMU).

    .venv/bin/python -m benchmarks.avx2_emulated --model-dir work/minilm13 --n 200 \\
        [--files onnx/model.onnx onnx/model_qint8_avx512_vnni.onnx ...] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.corpus import lee_documents, lee_human_similarities, mixed
from benchmarks.quality import spearman
from benchmarks.system import machine
from benchmarks.timing import cosines

QEMU = "qemu-x86_64-static"
REFERENCE = "onnx/model.onnx"  # the fp32 file, run natively: what every row is compared with
CPU_MODEL = "Haswell"
_CHILD = """
import json, sys
import numpy as np
import lightembed
texts = json.load(open(sys.argv[3], encoding="utf-8"))
model = lightembed.SentenceTransformer(sys.argv[1], file_name=sys.argv[2], device="cpu", backend="onnx", threads=1)
np.save(sys.argv[4], model.encode(texts, batch_size=32))
"""


def encode(model_dir: Path, file: str, texts_file: Path, out: Path, emulate: bool) -> np.ndarray:
    """Embeddings of the texts in `texts_file` by `file`, natively or under the emulated AVX2 CPU."""
    command = [sys.executable, "-c", _CHILD, str(model_dir), file, str(texts_file), str(out)]
    if emulate:
        command = [QEMU, "-cpu", CPU_MODEL, *command]
    env = dict(os.environ, LIGHTEMBED_PREOPTIMIZED="0" if emulate else "1", PYTHONWARNINGS="ignore")
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=7200, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{file} ({'emulated' if emulate else 'native'}) failed: {done.stderr[-1500:]}")
    return np.load(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.avx2_emulated", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--files", nargs="+")
    parser.add_argument("--lee", action="store_true", help="also the Lee corpus Spearman per file and dispatch")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if shutil.which(QEMU) is None:
        print(f"{QEMU} is not installed (apt-get install qemu-user-static)", file=sys.stderr)
        return 2
    manifest = json.loads((args.model_dir / "lightembed.json").read_text(encoding="utf-8"))
    files = [f for f in args.files or [e["path"] for e in manifest["files"] if e.get("passed")] if f != REFERENCE]
    texts = mixed(args.n, seed=21)
    corpora = {"mixed": texts}
    if args.lee:
        corpora["lee"] = lee_documents()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        emb: dict[tuple[str, str, str], np.ndarray] = {}
        for corpus, items in corpora.items():
            texts_file = Path(tmp) / f"{corpus}.json"
            texts_file.write_text(json.dumps(items), encoding="utf-8")
            for file in [REFERENCE, *files]:
                for mode in ("native",) if file == REFERENCE else ("native", "avx2"):
                    out = Path(tmp) / f"{corpus}-{mode}-{Path(file).name}.npy"
                    emb[(corpus, file, mode)] = encode(args.model_dir, file, texts_file, out, mode == "avx2")
                    print(f"[avx2] {corpus} {file} {mode} done", flush=True)
        reference = emb[("mixed", REFERENCE, "native")]
        pairs, human, _ = lee_human_similarities() if args.lee else ([], [], None)
        left, right = np.array([i for i, _ in pairs]), np.array([j for _, j in pairs])
        for file in files:
            row: dict = {"file": file}
            for mode in ("native", "avx2"):
                cos = cosines(reference, emb[("mixed", file, mode)])
                row[mode] = {"mean_cos": float(cos.mean()), "min_cos": float(cos.min())}
                if args.lee:
                    lee = emb[("lee", file, mode)]
                    row[mode]["lee_rho"] = spearman(cosines(lee[left], lee[right]), human)
            same = cosines(emb[("mixed", file, "native")], emb[("mixed", file, "avx2")])
            row["native_vs_avx2_min_cos"] = float(same.min())
            rows.append(row)
    report = {"command": " ".join([sys.executable, "-m", "benchmarks.avx2_emulated", *(argv or sys.argv[1:])]),
              "machine": machine(), "emulated_cpu": f"{QEMU} -cpu {CPU_MODEL}", "n": len(texts), "rows": rows}
    print(markdown(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1), encoding="utf-8")
    return 0


def markdown(report: dict) -> str:
    lee = "lee_rho" in report["rows"][0]["native"]
    head = "| file | native mean / min cos to fp32 | emulated AVX2 mean / min cos to fp32 | native vs AVX2 (min cos) |"
    if lee:
        head += " Lee rho native | Lee rho AVX2 |"
    lines = [f"`{report['command']}` ({report['n']} mixed texts; AVX2 dispatch emulated by {report['emulated_cpu']})",
             "", head, "|" + "---|" * (head.count("|") - 1)]
    for r in report["rows"]:
        n, a = r["native"], r["avx2"]
        line = (f"| {r['file']} | {n['mean_cos']:.5f} / {n['min_cos']:.5f} | {a['mean_cos']:.5f} / {a['min_cos']:.5f} "
                f"| {r['native_vs_avx2_min_cos']:.6f} |")
        if lee:
            line += f" {n['lee_rho']:.4f} | {a['lee_rho']:.4f} |"
        lines.append(line)
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
