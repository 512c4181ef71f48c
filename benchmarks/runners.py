"""One runner per library and file, with a common interface: `name`, `load()`, `encode(texts) -> np.ndarray`.

Every runner uses THREADS intra-op threads and BATCH_SIZE, and loads the same ONNX files from the same folder
(sentence-transformers on torch loads the source weights those files were exported from). Libraries are imported
inside load(), so a runner can be built (and skipped with a reason) where its library is not installed, and a
cold-start process imports only the library it measures.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from benchmarks.paths import BATCH_SIZE, FP32_FILE, O3_FILE, QINT8_FILE, QUINT8_FILE, STATIC_FILE, THREADS

# Nothing may reach the Hugging Face Hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@dataclass(frozen=True)
class ModelPaths:
    onnx_dir: Path    # the lightembed-export folder (onnx/*.onnx, configs, tokenizer)
    torch_dir: Path   # the sentence-transformers folder with the torch weights it was exported from


class Runner:
    """Base: subclasses set the class attributes and implement _load, encode and token_lengths."""

    key = ""             # short id used on the command line and in results.json
    name = ""            # row label
    library = ""         # the package whose availability decides whether the row runs
    file: str | None = None
    batching = "tokens"  # how the library orders texts into batches: tokens | chars | none (for padding counts)

    def __init__(self, paths: ModelPaths, threads: int = THREADS, batch_size: int = BATCH_SIZE) -> None:
        self.paths = paths
        self.threads = threads
        self.batch_size = batch_size
        self.model: Any = None
        self.notes: list[str] = []

    def unavailable(self) -> str | None:
        """Why this runner cannot run here, or None."""
        module = self.library.replace("-", "_")
        if importlib.util.find_spec(module) is None:
            return f"{self.library} is not installed (pip install {self.library})"
        if self.file and not (self.paths.onnx_dir / self.file).is_file():
            return f"{self.paths.onnx_dir / self.file} does not exist"
        return None

    def import_library(self) -> None:
        """Import the library (timed separately in cold starts)."""
        raise NotImplementedError

    def load(self) -> None:
        self.import_library()
        self._load()

    def _load(self) -> None:
        raise NotImplementedError

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError

    def token_lengths(self, texts: Sequence[str]) -> np.ndarray:
        """Real tokens of each text as this library tokenizes and truncates it (special tokens included)."""
        raise NotImplementedError

    def close(self) -> None:
        self.model = None


# ----- lightembed ------------------------------------------------------------------------------------------


class Lightembed(Runner):
    library = "lightembed"
    batching = "tokens"  # lightembed sorts by token count, longest first
    backend: str | None = "onnx"  # the file on onnxruntime; None: what lightembed picks with no options
    preoptimized = True  # False: LIGHTEMBED_PREOPTIMIZED=0, the exported file optimized at load
    ov_config: dict[str, Any] | None = None  # OpenVINO settings (backend="openvino")
    inspect_failed = False  # True: a file that failed its export check is loaded with verify=False to measure it
    settle = True  # wait for a hand-over to OpenVINO before timing (throughput); the cold-start worker does not

    def import_library(self) -> None:
        from lightembed import SentenceTransformer  # noqa: F401

    def _load(self) -> None:
        from lightembed import SentenceTransformer
        from lightembed import manifest

        kwargs: dict[str, Any] = {"backend": self.backend, "threads": self.threads, "file_name": self.file}
        if self.ov_config:
            kwargs["model_kwargs"] = {"ov_config": self.ov_config}
        found = manifest.read(self.paths.onnx_dir, strict=False)
        entry = found.record(self.paths.onnx_dir / (self.file or "onnx/model.onnx")) if found else None
        if self.inspect_failed and entry is not None and entry.passed is False:
            kwargs["verify"] = False
            self.notes.append("this file FAILED its export check; loaded with verify=False only to measure it")
        self.model = SentenceTransformer(self.paths.onnx_dir, device="cpu", preoptimized=self.preoptimized, **kwargs)
        graph = self.model._opened.graph
        if self.settle and hasattr(graph, "wait"):  # the policy chose OpenVINO: time it once it has taken over
            graph.wait()
        info = self.model.runtime_info
        self.notes.append(f"backend={self.model.get_backend()} ({self.model.backend_reason}); ran "
                          f"{info.preoptimized_file or info.onnx_file} on {info.providers[0]}")

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.model.encode(list(texts), batch_size=self.batch_size), dtype=np.float32)

    def token_lengths(self, texts: Sequence[str]) -> np.ndarray:
        return lightembed_lengths(self.model, texts)


def lightembed_lengths(model: Any, texts: Sequence[str], chunk: int = 512) -> np.ndarray:
    """Real tokens per text (truncated at max_seq_length) through lightembed's public tokenize()."""
    out = [model.tokenize(list(texts[i : i + chunk]))["attention_mask"].sum(1) for i in range(0, len(texts), chunk)]
    return np.concatenate(out).astype(np.int64) if out else np.zeros(0, dtype=np.int64)


def _lightembed(key: str, label: str, file: str | None, **attrs: Any) -> type[Lightembed]:
    return type(f"Lightembed_{key}", (Lightembed,), {"key": key, "name": label, "file": file, **attrs})


# ----- sentence-transformers -------------------------------------------------------------------------------


class SentenceTransformersBase(Runner):
    library = "sentence-transformers"
    batching = "chars"  # sentence-transformers sorts by character length, longest first

    def import_library(self) -> None:
        import sentence_transformers  # noqa: F401
        import torch

        torch.set_num_threads(self.threads)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = self.model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True)
        return np.asarray(out, dtype=np.float32)

    def token_lengths(self, texts: Sequence[str]) -> np.ndarray:
        tok = self.model.tokenizer(
            list(texts), truncation=True, max_length=self.model.max_seq_length, add_special_tokens=True
        )
        return np.array([len(ids) for ids in tok["input_ids"]], dtype=np.int64)

    def _check_flatten(self) -> None:
        can_flatten = getattr(self.model, "_can_flatten_inputs", None)
        if callable(can_flatten) and can_flatten():
            self.batching = "flattened"
            self.notes.append("sentence-transformers flattens inputs here (no padding)")


class SentenceTransformersTorch(SentenceTransformersBase):
    key = "st_torch"
    name = "sentence-transformers torch fp32"

    def unavailable(self) -> str | None:
        for module in ("sentence_transformers", "torch"):
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed"
        return None

    def _load(self) -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(self.paths.torch_dir), device="cpu")
        self._check_flatten()


class SentenceTransformersOnnx(SentenceTransformersBase):
    def unavailable(self) -> str | None:
        reason = super().unavailable()
        if reason:
            return reason
        for module in ("optimum", "onnxruntime"):
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed (pip install 'sentence-transformers[onnx]')"
        return None

    def _load(self) -> None:
        import onnxruntime as ort
        from sentence_transformers import SentenceTransformer

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        self.model = SentenceTransformer(
            str(self.paths.onnx_dir),
            device="cpu",
            backend="onnx",
            model_kwargs={"provider": "CPUExecutionProvider", "file_name": self.file, "session_options": options},
        )
        self._check_flatten()


def _st_onnx(key: str, label: str, file: str) -> type[SentenceTransformersOnnx]:
    return type(f"STOnnx_{key}", (SentenceTransformersOnnx,), {"key": key, "name": label, "file": file})


# ----- fastembed -------------------------------------------------------------------------------------------

_FASTEMBED_REGISTERED: dict[str, str] = {}


def fastembed_model_name(file: str) -> str:
    """Register `file` of the local folder as a fastembed custom model (once per process); return its name."""
    if file in _FASTEMBED_REGISTERED:
        return _FASTEMBED_REGISTERED[file]
    from fastembed import TextEmbedding
    from fastembed.common.model_description import ModelSource, PoolingType

    name = "lightembed-bench/all-MiniLM-L6-v2-" + Path(file).stem
    TextEmbedding.add_custom_model(
        model=name,
        pooling=PoolingType.MEAN,
        normalization=True,
        sources=ModelSource(hf=name),  # never fetched: specific_model_path short-circuits the download
        dim=384,
        model_file=file,
    )
    _FASTEMBED_REGISTERED[file] = name
    return name


class Fastembed(Runner):
    library = "fastembed"
    batching = "none"  # fastembed batches in input order
    file = FP32_FILE
    max_length: int | None = None  # None: the truncation fastembed derives from the folder's tokenizer files

    def import_library(self) -> None:
        from fastembed import TextEmbedding  # noqa: F401

    def _load(self) -> None:
        from fastembed import TextEmbedding

        self.model = TextEmbedding(
            fastembed_model_name(self.file),
            specific_model_path=str(self.paths.onnx_dir),
            threads=self.threads,
            providers=["CPUExecutionProvider"],
            local_files_only=True,
        )
        tokenizer = self.model.model.tokenizer
        derived = (tokenizer.truncation or {}).get("max_length")
        if self.max_length is not None:
            tokenizer.enable_truncation(max_length=self.max_length, direction="right")
            self.notes.append(f"truncation set to {self.max_length} (fastembed derived {derived} from the folder)")
        else:
            self.notes.append(f"fastembed truncates at {derived} tokens (from the folder's tokenizer_config.json)")
        self.truncation = (tokenizer.truncation or {}).get("max_length")

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack(list(self.model.embed(list(texts), batch_size=self.batch_size))).astype(np.float32)

    def token_lengths(self, texts: Sequence[str]) -> np.ndarray:
        encodings = self.model.model.tokenizer.encode_batch(list(texts))
        return np.array([int(sum(e.attention_mask)) for e in encodings], dtype=np.int64)


class FastembedAsLoaded(Fastembed):
    key = "fe_fp32"
    name = "fastembed fp32"


class Fastembed256(Fastembed):
    key = "fe_fp32_256"
    name = "fastembed fp32 (max_length 256)"
    max_length = 256


# ----- the floor: onnxruntime + tokenizers with nothing around them ----------------------------------------


class BareOnnx(Runner):
    """What any Python wrapper of this ONNX file must at least do: tokenize, run, mean-pool, normalize. No
    sorting, no validation. A cold-start anchor for what lightembed adds over the floor."""

    library = "onnxruntime"
    batching = "none"

    def import_library(self) -> None:
        import onnxruntime  # noqa: F401
        import tokenizers  # noqa: F401

    def _load(self) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        self.session = ort.InferenceSession(
            str(self.paths.onnx_dir / self.file), options, providers=["CPUExecutionProvider"]
        )
        self.tokenizer = Tokenizer.from_file(str(self.paths.onnx_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=256)
        self.tokenizer.enable_padding()
        self.names = [i.name for i in self.session.get_inputs()]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = []
        for start in range(0, len(texts), self.batch_size):
            encodings = self.tokenizer.encode_batch(list(texts[start : start + self.batch_size]))
            arrays = {
                "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
                "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
            }
            hidden = self.session.run(["last_hidden_state"], {k: arrays[k] for k in self.names})[0]
            mask = arrays["attention_mask"][:, :, None].astype(np.float32)
            pooled = (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)
            out.append(pooled / np.linalg.norm(pooled, axis=1, keepdims=True))
        return np.concatenate(out)

    def token_lengths(self, texts: Sequence[str]) -> np.ndarray:
        return np.array([len(e.ids) for e in self.tokenizer.encode_batch(list(texts))], dtype=np.int64)


def _bare(key: str, label: str, file: str) -> type[BareOnnx]:
    return type(f"BareOnnx_{key}", (BareOnnx,), {"key": key, "name": label, "file": file})


# ----- registry --------------------------------------------------------------------------------------------

RUNNERS: dict[str, type[Runner]] = {
    cls.key: cls
    for cls in (
        SentenceTransformersTorch,
        _st_onnx("st_onnx_fp32", "sentence-transformers onnx fp32", FP32_FILE),
        _st_onnx("st_onnx_quint8", "sentence-transformers onnx quint8 (u8xu8, avx2)", QUINT8_FILE),
        _st_onnx("st_onnx_qint8", "sentence-transformers onnx qint8 (u8xs8, avx512_vnni)", QINT8_FILE),
        _lightembed("le_fp32", "lightembed fp32", FP32_FILE),
        _lightembed("le_O3", "lightembed O3", O3_FILE),
        _lightembed("le_quint8", "lightembed quint8 (u8xu8, avx2)", QUINT8_FILE),
        _lightembed("le_qint8", "lightembed qint8 (u8xs8, avx512_vnni)", QINT8_FILE),
        _lightembed("le_static", "lightembed qint8 static (batch-invariant)", STATIC_FILE),
        _lightembed("le_default", "lightembed, no options (its own choice of file and backend)", None, backend=None),
        _lightembed("le_fp32_plain", "lightembed fp32, optimized at load (no pre-optimized copy)", FP32_FILE,
                    preoptimized=False),
        _lightembed("le_qint8_plain", "lightembed qint8 (avx512_vnni), optimized at load", QINT8_FILE,
                    preoptimized=False),
        FastembedAsLoaded,
        Fastembed256,
        type("FastembedQint8", (Fastembed,), {"key": "fe_qint8", "name": "fastembed qint8 (avx512_vnni file)",
                                               "file": QINT8_FILE}),
        _bare("bare_fp32", "bare onnxruntime + tokenizers fp32", FP32_FILE),
        _bare("bare_qint8", "bare onnxruntime + tokenizers qint8 (avx512_vnni)", QINT8_FILE),
    )
}
# Cold-start rows only, left out of the in-process steps by default: the floor's anchors, and the runs without the
# pre-optimized copy (in-process they run the same kernels on the same graph).
FLOOR_KEYS = ("bare_fp32", "bare_qint8", "le_fp32_plain", "le_qint8_plain")
BASELINE = "st_torch"
LIGHTEMBED_KEYS = ("le_fp32", "le_O3", "le_quint8", "le_qint8", "le_static")
INT8_KEYS = ("le_quint8", "le_qint8")  # the dynamic int8 files, one of which the CPU's features pick
STATIC_KEY = "le_static"


def make_runner(key: str, paths: ModelPaths, threads: int = THREADS, batch_size: int = BATCH_SIZE) -> Runner:
    if key not in RUNNERS:
        raise KeyError(f"unknown variant {key!r}; choose from {', '.join(RUNNERS)}")
    return RUNNERS[key](paths, threads, batch_size)


def padded_tokens(lengths: np.ndarray, texts: Sequence[str], batching: str, batch_size: int) -> int:
    """Token positions the model computes (real + padding) when the library batches `texts` its way."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if batching == "flattened" or len(lengths) == 0:
        return int(lengths.sum())
    if batching == "tokens":
        order = np.argsort(-lengths, kind="stable")
    elif batching == "chars":
        order = np.argsort([-len(t) for t in texts])  # sentence-transformers' own expression
    elif batching == "none":
        order = np.arange(len(lengths))
    else:
        raise ValueError(f"unknown batching rule {batching!r}")
    ordered = lengths[order]
    total = 0
    for start in range(0, len(ordered), batch_size):
        chunk = ordered[start : start + batch_size]
        total += int(chunk.max()) * len(chunk)
    return total


def load_available(
    keys: Sequence[str], paths: ModelPaths, echo: Callable[[str], None] = print, **kwargs: Any
) -> tuple[list[Runner], dict[str, str]]:
    """Build and load the runners that can run here; return them and {key: reason} for the skipped ones."""
    import time

    runners: list[Runner] = []
    skipped: dict[str, str] = {}
    for key in keys:
        runner = make_runner(key, paths, **kwargs)
        reason = runner.unavailable()
        if reason:
            skipped[key] = reason
            echo(f"[load] SKIP {runner.name}: {reason}")
            continue
        started = time.perf_counter()
        try:
            runner.load()
        except Exception as exc:  # a library that is installed but cannot load this folder: report, go on
            skipped[key] = f"load failed: {type(exc).__name__}: {exc}"
            echo(f"[load] SKIP {runner.name}: {skipped[key]}")
            continue
        extra = f" ({'; '.join(runner.notes)})" if runner.notes else ""
        echo(f"[load] {runner.name}: {time.perf_counter() - started:.1f} s{extra}")
        runners.append(runner)
    return runners, skipped
