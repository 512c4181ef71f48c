"""Build lightembed's serving image (deploy/Containerfile) and, side by side, the same image on
sentence-transformers and on fastembed; run each offline to embed a sentence, then as a server on a loopback
port, and report its size and the time from `podman run` to the first answered request.

    python deploy/build_and_test.py --model work/minilm --file onnx/model_qint8_avx512_vnni.onnx \\
        [--checkpoint SRC] [--flavors lightembed sentence-transformers fastembed] [--json out.json]

Needs root, podman/buildah/skopeo and mmdebstrap (deploy/host_setup.sh installs them). No registry is used:
the base is Debian bookworm's python3 built with mmdebstrap (localhost/lightembed-base:bookworm), and the
Python dependencies are installed on the host with `pip install --target --platform` and copied in
(Containerfile's DEPS=context). With a registry, `--base python:3.12-slim --deps pip` builds the user's way.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
LOCAL_BASE = "localhost/lightembed-base:bookworm"
PY_VERSION = "3.11"  # bookworm's python3
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_28_x86_64")
SENTENCE = "A man is eating food."
FLAVORS = ("lightembed", "sentence-transformers", "fastembed")
BASELINE_DEPS = {
    # torch's CPU build (the +cpu wheel); PyPI's default torch wheel brings the CUDA libraries.
    "sentence-transformers": ["torch==2.13.0+cpu", "sentence-transformers", "starlette", "uvicorn"],
    "fastembed": ["fastembed", "starlette", "uvicorn"],
}


def log(msg: str) -> None:
    print(f"[build_and_test] {msg}", file=sys.stderr, flush=True)


def sh(*cmd: str, capture: bool = False, check: bool = True, timeout: float = 1800, **kw: Any) -> str:
    result = subprocess.run(cmd, text=True, capture_output=capture, timeout=timeout, **kw)
    if check and result.returncode != 0:
        detail = (result.stderr or "")[-3000:] if capture else ""
        raise RuntimeError(f"{' '.join(cmd[:6])} ... exited {result.returncode}\n{detail}")
    return result.stdout if capture else ""


def ensure_base(work: Path, image: str = LOCAL_BASE) -> str:
    """A local Debian bookworm base with python3 (mmdebstrap, no registry); built once."""
    if subprocess.run(["podman", "image", "exists", image]).returncode == 0:
        return image
    tar = work / "base-amd64.tar"
    if not tar.is_file():
        log("mmdebstrap: bookworm python3 root filesystem")
        sh("mmdebstrap", "--variant=extract", "--include=python3,libstdc++6,ca-certificates", "bookworm",
           str(tar), capture=True)
    ctr = sh("buildah", "from", "scratch", capture=True).strip()
    try:
        sh("buildah", "add", ctr, str(tar), "/", capture=True)
        sh("buildah", "config", "--env", "LANG=C.UTF-8", ctr)
        sh("buildah", "commit", "-q", ctr, image, capture=True)
    finally:
        sh("buildah", "rm", ctr, capture=True, check=False)
    return image


def pip_target(site: Path, requirements: list[str]) -> None:
    """Install `requirements` for the image's Python and platform into `site` (binary wheels only)."""
    if site.exists():
        shutil.rmtree(site)
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    sh(sys.executable, "-m", "pip", "install", "-q", "--no-compile", "--target", str(site), "--only-binary=:all:",
       *platforms, "--python-version", PY_VERSION, "--implementation", "cp", *requirements, capture=True)
    shutil.rmtree(site / "bin", ignore_errors=True)  # console scripts with the host's interpreter path


def lightembed_wheel(work: Path) -> Path:
    out = work / "wheel"
    shutil.rmtree(out, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:  # build from a copy: setuptools writes build/ into the source
        src = Path(tmp) / "src"
        src.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(ROOT / name, src / name)
        shutil.copytree(ROOT / "lightembed", src / "lightembed", ignore=shutil.ignore_patterns("__pycache__"))
        sh(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
           str(src), capture=True)
    return next(out.glob("lightembed-*.whl"))


def stage_context(flavor: str, work: Path, model: Path, file_name: str, checkpoint: Path | None,
                  extras: str = "server,aws-lambda") -> Path:
    """The build context: site/ (dependencies), model/ and the Containerfile's other inputs."""
    sys.path.insert(0, str(DEPLOY))
    from stage_model import stage

    ctx = work / f"ctx-{flavor}"
    ctx.mkdir(parents=True, exist_ok=True)
    if flavor == "lightembed":
        pip_target(ctx / "site", [f"{lightembed_wheel(work)}[{extras}]"])
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(ROOT / name, ctx / name)
        shutil.rmtree(ctx / "lightembed", ignore_errors=True)
        shutil.copytree(ROOT / "lightembed", ctx / "lightembed", ignore=shutil.ignore_patterns("__pycache__"))
        for name in ("Containerfile", "prune.py", "prune.txt"):
            shutil.copy2(DEPLOY / name, ctx / name)
        stage(model, ctx / "model", file_name)
    else:
        pip_target(ctx / "site", BASELINE_DEPS[flavor])
        shutil.copy2(DEPLOY / "compare" / "Containerfile", ctx / "Containerfile")
        shutil.copy2(DEPLOY / "compare" / "baseline_app.py", ctx / "baseline_app.py")
        if flavor == "sentence-transformers":
            if checkpoint is None:
                raise ValueError("--checkpoint (the sentence-transformers folder) is needed for that flavor")
            shutil.rmtree(ctx / "model", ignore_errors=True)
            shutil.copytree(checkpoint, ctx / "model", ignore=shutil.ignore_patterns(
                "*.onnx", "onnx", "openvino", "*.h5", "*.msgpack", "pytorch_model.bin", "README.md", ".git*"))
        else:
            stage(model, ctx / "model", file_name)
    return ctx


def build(flavor: str, ctx: Path, base: str, deps: str, model_name: str = "model") -> str:
    tag = f"localhost/lightembed-deploy-{flavor}:test"
    args = ["--build-arg", f"BASE={base}"]
    if flavor == "lightembed":
        args += ["--build-arg", f"DEPS={deps}", "--build-arg", f"MODEL_NAME={model_name}"]
    else:
        args += ["--build-arg", f"BACKEND={flavor}"]
    # docker format: OCI image configs have no HEALTHCHECK.
    sh("buildah", "bud", "-q", "--pull=never", "--format", "docker", "--layers=false", *args,
       "-f", str(ctx / "Containerfile"), "-t", tag, str(ctx), capture=True)
    return tag


def image_sizes(tag: str, base: str, work: Path) -> dict[str, float]:
    """Uncompressed size (podman) and gzipped layers (as a registry would hold them), MB; also without the base."""
    def layers(image: str) -> list[str]:
        return json.loads(sh("podman", "image", "inspect", image, capture=True))[0]["RootFS"]["Layers"]

    base_layers = set(layers(base))
    size = json.loads(sh("podman", "image", "inspect", tag, capture=True))[0]["Size"]
    out = work / "oci-export"
    shutil.rmtree(out, ignore_errors=True)
    sh("skopeo", "copy", "-q", "--dest-compress", "--dest-compress-format", "gzip", f"containers-storage:{tag}",
       f"oci:{out}:x", capture=True)
    index = json.loads((out / "index.json").read_text())
    manifest_digest = index["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads((out / "blobs" / "sha256" / manifest_digest).read_text())
    gz = [layer["size"] for layer in manifest["layers"]]
    diff_ids = layers(tag)
    own_gz = sum(s for s, d in zip(gz, diff_ids) if d not in base_layers)
    shutil.rmtree(out, ignore_errors=True)
    return {"uncompressed_mb": size / 1e6, "gzip_mb": sum(gz) / 1e6, "gzip_mb_without_base": own_gz / 1e6,
            "layers": len(gz)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: dict, timeout: float = 10) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def run_offline(flavor: str, tag: str) -> list[float]:
    """Embed one sentence with --network=none; the vector."""
    cmd = ["encode", "/opt/model", SENTENCE] if flavor == "lightembed" else ["encode", SENTENCE]
    out = sh("podman", "run", "--rm", "--network=none", tag, *cmd, capture=True, timeout=300)
    return json.loads(out)[0]


def inspect_pruned(tag: str) -> dict[str, Any]:
    """What deploy/prune.txt left in the image's /opt/site, and what a Hub id gives there (no huggingface_hub)."""
    site = sh("podman", "run", "--rm", "--network=none", "--entrypoint", "python3", tag, "-c",
              "import json, os; print(json.dumps(sorted(os.listdir('/opt/site'))))",
              capture=True, timeout=120)
    ort = sh("podman", "run", "--rm", "--network=none", "--entrypoint", "python3", tag, "-c",
             "import os, onnxruntime; print(' '.join(sorted(os.listdir(os.path.dirname(onnxruntime.__file__)))))",
             capture=True, timeout=120)
    hub = subprocess.run(["podman", "run", "--rm", "--network=none", tag, "encode", "some-org/some-model", SENTENCE],
                         capture_output=True, text=True, timeout=120)
    return {"site_packages": json.loads(site), "onnxruntime_files": ort.split(),
            "hub_id_rc": hub.returncode, "hub_id_stderr": hub.stderr[-2000:]}


def run_server(flavor: str, tag: str, timeout: float = 180) -> dict[str, Any]:
    """`podman run` the server on a loopback port; time to the first answered embeddings request, then checks."""
    port = free_port()
    name = f"lightembed-deploy-{flavor}-{os.getpid()}"
    url = f"http://127.0.0.1:{port}"
    start = time.perf_counter()
    sh("podman", "run", "-d", "--rm", "--name", name, "-p", f"127.0.0.1:{port}:8080", tag, capture=True)
    try:
        status, body = 0, {}
        deadline = start + timeout
        while time.perf_counter() < deadline:  # bounded: stops at the deadline
            try:
                status, body = post(f"{url}/v1/embeddings", {"input": [SENTENCE]}, timeout=5)
                if status == 200:
                    break
            except (urllib.error.URLError, ConnectionError, OSError, ValueError):
                pass
            time.sleep(0.05)
        cold = time.perf_counter() - start
        if status != 200:
            logs = sh("podman", "logs", name, capture=True, check=False)
            raise RuntimeError(f"{flavor}: no answer within {timeout} s (last status {status}); logs:\n{logs[-3000:]}")
        result: dict[str, Any] = {"cold_start_s": cold, "vector": body["data"][0]["embedding"]}
        result["bad_request_status"] = post(f"{url}/v1/embeddings", {"input": 5})[0]
        inspect = json.loads(sh("podman", "inspect", name, capture=True))[0]
        result["user"] = inspect["Config"].get("User")
        result["uid"] = sh("podman", "exec", name, "python3", "-c", "import os; print(os.getuid())",
                           capture=True).strip()
        if flavor == "lightembed":
            result["healthcheck"] = inspect["Config"].get("Healthcheck", {}).get("Test")
            result["healthcheck_rc"] = subprocess.run(["podman", "healthcheck", "run", name],
                                                      capture_output=True).returncode
            with urllib.request.urlopen(f"{url}/health", timeout=5) as resp:
                result["health_status"] = resp.status
            result["env"] = [e for e in inspect["Config"].get("Env", []) if e.startswith("HF_HUB_OFFLINE")]
        return result
    finally:
        subprocess.run(["podman", "stop", "-t", "5", name], capture_output=True, timeout=60)


def machine_info() -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from benchmarks.system import machine

    return machine()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True, help="exported model folder (lightembed-export's output)")
    ap.add_argument("--file", default="onnx/model.onnx", help="the ONNX file to ship (it becomes onnx/model.onnx)")
    ap.add_argument("--checkpoint", type=Path, help="sentence-transformers folder, for the sentence-transformers image")
    ap.add_argument("--flavors", nargs="+", default=["lightembed"], choices=FLAVORS)
    ap.add_argument("--work", type=Path, default=ROOT / "work" / "deploy")
    ap.add_argument("--base", default=None, help=f"base image (default: {LOCAL_BASE}, built here with mmdebstrap)")
    ap.add_argument("--deps", choices=("context", "pip"), default="context")
    ap.add_argument("--extras", default="server,aws-lambda", help="lightembed extras in the image")
    ap.add_argument("--model-name", default="model", help="the name the image serves the model under")
    ap.add_argument("--cold-runs", type=int, default=1, help="server starts per image (median reported)")
    ap.add_argument("--reuse-images", action="store_true", help="measure images built by an earlier --keep-images run")
    ap.add_argument("--keep-images", action="store_true", help="leave the built images in podman's storage")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)

    args.work.mkdir(parents=True, exist_ok=True)
    base = args.base or ensure_base(args.work)
    results: dict[str, Any] = {"base": base, "file": args.file, "sentence": SENTENCE, "flavors": {}}
    for flavor in args.flavors:
        t0 = time.perf_counter()
        tag = f"localhost/lightembed-deploy-{flavor}:test"
        if args.reuse_images and subprocess.run(["podman", "image", "exists", tag]).returncode == 0:
            log(f"{flavor}: reusing {tag}")
        else:
            ctx = stage_context(flavor, args.work, args.model, args.file, args.checkpoint, args.extras)
            tag = build(flavor, ctx, base, args.deps, args.model_name)
            log(f"{flavor}: built {tag} in {time.perf_counter() - t0:.0f} s")
        row: dict[str, Any] = {"image": tag, "load_average": os.getloadavg(), **image_sizes(tag, base, args.work)}
        row["offline_vector"] = run_offline(flavor, tag)
        if flavor == "lightembed":
            row.update(inspect_pruned(tag))
        row.update(run_server(flavor, tag))
        row["cold_starts_s"] = [row["cold_start_s"]]
        results["flavors"][flavor] = row
    # More cold starts, the flavors taking turns, so a load change on a shared machine hits them alike.
    for _ in range(args.cold_runs - 1):
        for flavor, row in results["flavors"].items():
            row["cold_starts_s"].append(run_server(flavor, row["image"])["cold_start_s"])
            row.setdefault("load_averages", []).append(os.getloadavg())
    for flavor, row in results["flavors"].items():
        row["cold_start_s"] = statistics.median(row["cold_starts_s"])
        if not args.keep_images:
            sh("podman", "rmi", "-f", row["image"], capture=True, check=False)
    for flavor, row in results["flavors"].items():
        log(f"{flavor}: {row['uncompressed_mb']:.0f} MB uncompressed, {row['gzip_mb']:.1f} MB gzipped layers, "
            f"first answer {row['cold_start_s']:.2f} s after podman run (median of {len(row['cold_starts_s'])})")
    results["machine"] = machine_info()
    text = json.dumps(results, indent=1)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
