"""Copy an exported model folder for an image or a function bundle, keeping one ONNX file.

The chosen file (e.g. onnx/model_qint8_avx512_vnni.onnx) becomes onnx/model.onnx, the file every loader picks by
default, and lightembed.json keeps that file's record only (same sha256 and drift, with `renamed_from`), so the
integrity check still verifies it at load. The other ONNX files, often 4x the int8 file's size, are left out, and so
is the chosen file's pre-optimized copy (`<file>.cpu` + `.cpu.data`, lightembed.preoptimized) unless
`--preoptimized` asks for it: it doubles the model's bytes and only loads on a machine with the same onnxruntime
and CPU flags as the one that wrote it.

    python deploy/stage_model.py work/minilm build/model --file onnx/model_qint8_avx512_vnni.onnx
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

TARGET = "onnx/model.onnx"


def stage(source: Path, dest: Path, file_name: str = TARGET, preoptimized: bool = False) -> Path:
    """Write `dest` from the model folder `source` with `file_name` as its only ONNX file (onnx/model.onnx), plus
    its pre-optimized copy under its own name when `preoptimized` and the folder has one."""
    chosen = source / file_name
    if not chosen.is_file():
        present = sorted(p.relative_to(source).as_posix() for p in source.rglob("*.onnx"))
        raise FileNotFoundError(f"{chosen} does not exist; ONNX files in {source}: {present}")
    if dest.exists():
        shutil.rmtree(dest)
    skipped = ("*.onnx", "*.onnx_data", "*.onnx.data", "*.onnx.cpu", "*.onnx.cpu.data", "README.md")
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns(*skipped))
    (dest / "onnx").mkdir(exist_ok=True)
    shutil.copy2(chosen, dest / TARGET)
    manifest = source / "lightembed.json"
    if manifest.is_file():
        data = json.loads(manifest.read_text(encoding="utf-8"))
        kept = [dict(e, path=TARGET, renamed_from=file_name) for e in data.get("files", []) if e.get("path") == file_name]
        for entry in kept:
            record = entry.pop("cpu_preoptimized", None)
            if preoptimized and isinstance(record, dict) and record.get("passed"):
                # The copy keeps its name: its graph names its data file. The record says where both are.
                for rel in [record["path"], *(d["path"] for d in record.get("external_data") or [])]:
                    shutil.copy2(source / rel, dest / "onnx" / Path(rel).name)
                entry["cpu_preoptimized"] = dict(
                    record,
                    path=f"onnx/{Path(record['path']).name}",
                    external_data=[
                        dict(d, path=f"onnx/{Path(d['path']).name}") for d in record.get("external_data") or []
                    ],
                )
        data["files"] = kept
        (dest / "lightembed.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return dest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path, help="exported model folder (lightembed-export's output)")
    ap.add_argument("dest", type=Path, help="folder to write (replaced if it exists)")
    ap.add_argument("--file", default=TARGET, help="the ONNX file to keep, relative to SOURCE")
    ap.add_argument(
        "--preoptimized",
        action="store_true",
        help="also keep the file's pre-optimized copy (for images built on the CPU class that will serve them)",
    )
    args = ap.parse_args(argv)
    try:
        stage(args.source, args.dest, args.file, args.preoptimized)
    except (FileNotFoundError, ValueError) as exc:
        print(f"stage_model: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
