"""`lightembed tune`: time the near-lossless ways to run a model file on this machine and record the fastest in
lightembed.json, keyed by the machine class and the onnxruntime/OpenVINO versions, so that `backend=None` on a
machine of the same class runs it (lightembed.graphs.policy.decide) without timing anything at load.

Candidates for a float file: onnxruntime fp32 (its pre-optimized copy where the folder has one for this CPU: the
baseline), OpenVINO f32 and OpenVINO bf16 (where the `openvino` extra is installed). With `int8=True` the folder's
int8 files are timed too (on onnxruntime and OpenVINO), each recorded under its own record; int8 is never timed,
and so never chosen, without that opt-in.

Fidelity comes first: a candidate counts only if each calibration text's vector keeps cosine >= 0.9999 to
onnxruntime fp32 (an int8 file: the int8 bars of lightembed.graphs.policy, and on OpenVINO within INT8_MARGIN of the
same file on onnxruntime). Timing is made robust for a noisy machine: every candidate is loaded and warmed first,
then `rounds` rounds run each candidate once in a rotating order (interleaved, so a slow spell hits all of them),
and the medians are compared. A candidate replaces the baseline only when it is faster by more than `margin`
(10%): on a tie the exact fp32 path stays.

The exporter calls `tune()` on its own machine with its calibration texts (lightembed-export --tune).
"""

from __future__ import annotations

import datetime
import hashlib
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lightembed import machine
from lightembed import manifest as manifests
from lightembed.errors import LightembedValueError, kind
from lightembed.graphs import openvino
from lightembed.graphs.policy import AUTO_MIN_COSINE, INT8_MARGIN, INT8_MEAN_COSINE, INT8_MIN_COSINE

MARGIN = 0.10
ROUNDS = 5
TIMED_TEXTS = 256
BATCH_SIZE = 32

_SENTENCES = (
    "How long should I boil an egg so the yolk stays soft?",
    "what time does the pharmacy on main street close on sundays",
    "Is it safe to run a dishwasher overnight while everyone is asleep?",
    "Parliament passed the budget late on Tuesday after a debate that lasted more than eleven hours.",
    "The airline cancelled dozens of flights as a winter storm swept across the north of the country.",
    "Quarterly profit fell 12% as the retailer cut prices to clear unsold stock before the holidays.",
    "Scientists have mapped the wiring of an entire fruit-fly brain, neuron by neuron.",
    "The visiting team held on for a goalless draw despite playing with ten men for an hour.",
    "Honestly the best headphones I have owned: comfortable, long battery, and the noise cancelling works.",
    "The hotel room was small and the walls were thin, but the breakfast made up for it.",
    "Two stars. The plot twist is visible from the first chapter and the dialogue feels wooden.",
    "Arrived broken, support never answered my emails. Returning it.",
    "Plate tectonics explains why earthquakes and volcanoes cluster along the edges of continents.",
    "A prime number has exactly two divisors: one and itself.",
    "The Roman aqueducts carried water over dozens of kilometres using gravity alone.",
    "for i, row in enumerate(rows):\n    if row is None:\n        continue\n    total += row.value",
    "curl -s -X POST https://api.example.com/v1/items -H 'Content-Type: application/json' -d '{\"id\": 7}'",
    "TypeError: unsupported operand type(s) for +: 'int' and 'NoneType'",
    "Invoice 2024-0917 — 12 × A4 paper (80 g/m²), 3 × toner; subtotal €214.60, VAT 21%.",
    "Meeting moved to Thursday 15:00, room 4B. Bring the Q3 numbers.",
    "ok see you there",
    "yes",
    "wow 😍😍 can't wait!!",
    "Der Zug nach Hamburg hat heute etwa zwanzig Minuten Verspätung.",
    "La bibliothèque municipale propose des ateliers gratuits pour les enfants le mercredi.",
    "Los precios de la vivienda siguen subiendo en las grandes ciudades.",
    "A ponte foi reaberta ao trânsito depois de seis meses de obras.",
    "Warszawa jest stolicą i największym miastem Polski.",
    "Киев расположен на берегах реки Днепр.",
    "京都には千年以上の歴史を持つ寺や神社が数多くあります。",
    "这家餐厅的面条很好吃,但是排队的时间太长了。",
    "부산은 한국에서 두 번째로 큰 도시입니다.",
    "Το καλοκαίρι στα νησιά είναι ζεστό και ξηρό.",
    "",
)


def _passages(sentences: Sequence[str], count: int = 6, length: int = 20) -> tuple[str, ...]:
    """`count` long passages of `length` sentences each, in a fixed order: past any model's max_seq_length."""
    pool = [s for s in sentences if s.strip()]
    order = np.random.default_rng(1).permutation(len(pool) * count) % len(pool)
    return tuple(" ".join(pool[i] for i in order[k * length : (k + 1) * length]) for k in range(count))


BUILT_IN_TEXTS: tuple[str, ...] = _SENTENCES + _passages(_SENTENCES)
"""The texts fidelity is checked on when neither the caller nor the exporter gives its own: questions, news,
reviews, facts, code, logs, chat, numbers, a dozen languages, an empty string and long passages."""


@dataclass(frozen=True)
class Candidate:
    """One way to run a file: its backend and OpenVINO INFERENCE_PRECISION_HINT (None: OpenVINO's default)."""

    label: str
    file: str
    backend: str
    precision: str | None = None
    int8: bool = False


@dataclass
class Measured:
    """A candidate's timings (seconds per timed run) and fidelity to onnxruntime fp32 on the calibration texts."""

    candidate: Candidate
    seconds: list[float] = field(default_factory=list)
    min_cosine: float | None = None
    mean_cosine: float | None = None
    passed: bool = False
    error: str | None = None
    runs: str | None = None
    """What actually ran (providers as runtime_info reports them)."""

    @property
    def median(self) -> float | None:
        return statistics.median(self.seconds) if self.seconds else None

    def speedup(self, baseline: Measured) -> float | None:
        """How many times faster than `baseline` (medians), or None without timings."""
        if self.median is None or baseline.median is None or self.median <= 0:
            return None
        return baseline.median / self.median

    def as_record(self, baseline: Measured, fp32: Measured) -> dict[str, Any]:
        c = self.candidate
        return {
            "label": c.label,
            "file": c.file,
            "backend": c.backend,
            "precision": c.precision,
            "runs": self.runs,
            "median_seconds": self.median,
            "speedup": _rounded(self.speedup(baseline)),
            "x_fp32": _rounded(self.speedup(fp32)),
            "min_cosine": self.min_cosine,
            "mean_cosine": self.mean_cosine,
            "passed": self.passed,
            "error": self.error,
        }


def _rounded(value: float | None) -> float | None:
    return round(value, 4) if value is not None else None


def candidates_for(file: str, int8: bool, with_openvino: bool) -> list[Candidate]:
    """The candidates for one file; the first is its baseline (onnxruntime, pre-optimized copy where there is one)."""
    kind = "int8" if int8 else "fp32"
    found = [Candidate(f"onnxruntime {kind}", file, "onnx", None, int8)]
    if with_openvino:
        if int8:
            found.append(Candidate("OpenVINO int8 file", file, "openvino", None, True))
        else:
            found += [
                Candidate("OpenVINO f32", file, "openvino", "f32"),
                Candidate("OpenVINO bf16", file, "openvino", "bf16"),
            ]
    return found


def pick(baseline: Measured, others: Sequence[Measured], margin: float = MARGIN) -> tuple[Measured, Measured | None]:
    """(the winner, the fastest other that passed): the fastest candidate that passed its fidelity bar when it is
    more than `margin` faster than `baseline`, else the baseline (a tie keeps the exact path)."""
    timed = [m for m in others if m.passed and m.speedup(baseline) is not None]
    best = max(timed, key=lambda m: m.speedup(baseline) or 0.0, default=None)
    if best is not None and (best.speedup(baseline) or 0.0) > 1.0 + margin:
        return best, best
    return baseline, best


def row_cosines(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Cosine of each row of `candidate` to the same row of `reference` (1 where both are zero)."""
    a, b = np.asarray(reference, np.float64), np.asarray(candidate, np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    dots = (a * b).sum(axis=1)
    return np.where(norms == 0, 1.0, dots / np.maximum(norms, 1e-300))


def _cannot_run(m: "Measured", exc: BaseException, say: Callable[[str], None]) -> None:
    """Record and say that a candidate cannot run (at load, or in its first run: OpenVINO may compile a file it
    then fails to run); on one line, as OpenVINO's messages span several."""
    m.error = f"{kind(exc)}: {' '.join(str(exc).split())}"[:400]
    say(f"{m.candidate.label} ({m.candidate.file}): cannot run: {m.error}")


def tune(
    model: str | Path,
    files: Sequence[str] | None = None,
    *,
    int8: bool = False,
    rounds: int = ROUNDS,
    timed_texts: int = TIMED_TEXTS,
    texts: Sequence[str] | None = None,
    texts_source: str | None = None,
    batch_size: int = BATCH_SIZE,
    margin: float = MARGIN,
    threads: int | None = None,
    write: bool = True,
    say: Callable[[str], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Time the candidates of `files` (default: the file `SentenceTransformer(model)` loads; with `int8`, also
    every int8 file the manifest lists as passed) on this machine, and record each file's result under its
    lightembed.json record (`tuned`, one entry per machine class and runtime versions; `write=False` only
    returns them). `texts`: the calibration texts fidelity is checked on (the exporter passes its own; default
    BUILT_IN_TEXTS); `timed_texts` of them (cycled) make one timed run. Returns {file: entry}."""
    from lightembed.encoder import SentenceTransformer
    from lightembed.hub import resolve

    rounds, timed_texts, batch_size = (
        _positive(v, n) for v, n in ((rounds, "rounds"), (timed_texts, "texts"), (batch_size, "batch_size"))
    )
    if not 0 <= margin < 10:
        raise LightembedValueError(f"margin must be a fraction such as 0.1 (10%), got {margin!r}.")
    say = say or (lambda _line: None)
    if write and not Path(model).expanduser().is_dir():
        raise LightembedValueError(f"{model} is not a local folder: tune records into the folder's lightembed.json.")
    folder, default_path = resolve(model)
    manifest = manifests.read(folder, strict=True)
    if manifest is None or not manifest.files:
        raise LightembedValueError(f"{folder} has no {manifests.MANIFEST_NAME}: tune records into an exported folder.")
    if manifest.model_class not in (None, "SentenceTransformer"):
        raise LightembedValueError(f"tune times SentenceTransformer folders; {folder} is a {manifest.model_class}.")
    chosen = _files(folder, manifest, default_path, files, int8)
    fp32_file = next((f for f, is_int8 in chosen if not is_int8), None) or _fp32_of(folder, manifest, default_path)
    calibration = tuple(texts) if texts is not None else BUILT_IN_TEXTS
    if not calibration or not all(isinstance(t, str) for t in calibration):
        raise LightembedValueError("tune needs a non-empty list of calibration texts (strings).")
    source = texts_source or ("given" if texts is not None else "built-in")
    timed = [calibration[i % len(calibration)] for i in range(timed_texts)]

    with_openvino = openvino.is_installed()
    if not with_openvino:
        say(f"OpenVINO is not installed ({openvino.EXTRA_HINT}): timing onnxruntime only")
    fp32_baseline = Candidate("onnxruntime fp32", fp32_file, "onnx")
    plan = [c for f, is_int8 in chosen for c in candidates_for(f, is_int8, with_openvino)]
    if fp32_baseline not in plan:  # an int8-only run still needs fp32 as the reference and the x_fp32 ratios
        plan.insert(0, fp32_baseline)
    measured = {c: Measured(c) for c in plan}
    models: dict[Candidate, Any] = {}
    for c in plan:
        try:
            settings = {"ov_config": {"INFERENCE_PRECISION_HINT": c.precision}} if c.precision else None
            models[c] = SentenceTransformer(str(folder), device="cpu", file_name=c.file, backend=c.backend,
                                            threads=threads, model_kwargs=settings)  # fmt: skip
            info = models[c].runtime_info
            copy = f" (pre-optimized copy {info.preoptimized_file})" if info.preoptimized_file else ""
            measured[c].runs = ", ".join(info.providers) + copy
        except Exception as exc:  # noqa: BLE001 - a backend that cannot run the file is recorded, not fatal
            _cannot_run(measured[c], exc, say)
    if fp32_baseline not in models:
        raise LightembedValueError(f"{fp32_file} does not run on onnxruntime: {measured[fp32_baseline].error}")

    reference = np.asarray(models[fp32_baseline].encode(list(calibration), batch_size=batch_size), np.float32)
    own: dict[str, float] = {}  # an int8 file's min cosine on onnxruntime
    for c in sorted(models, key=lambda c: c.backend != "onnx"):  # onnxruntime first: the int8 bar on OpenVINO
        m = measured[c]
        try:
            vectors = np.asarray(models[c].encode(list(calibration), batch_size=batch_size), np.float32)
        except Exception as exc:  # noqa: BLE001 - a backend that compiles a file but cannot run it: recorded
            if c == fp32_baseline:
                raise
            _cannot_run(m, exc, say)
            del models[c]
            continue
        cos = row_cosines(reference, vectors)
        m.min_cosine, m.mean_cosine = float(cos.min()), float(cos.mean())
        m.passed, m.error = _fidelity(c, m, own)
        if c.backend == "onnx" and c.int8:
            own[c.file] = m.min_cosine
    say(f"timing {len(models)} candidates: {rounds} interleaved rounds of {timed_texts} texts, batch {batch_size}")
    order = list(models)
    for c in order:  # warm-up: first-run allocations and OpenVINO's lazy work stay out of the timings
        models[c].encode(timed[:batch_size], batch_size=batch_size)
    for r in range(rounds):
        for c in order[r % len(order) :] + order[: r % len(order)]:
            start = time.perf_counter()
            models[c].encode(timed, batch_size=batch_size)
            measured[c].seconds.append(time.perf_counter() - start)

    entries: dict[str, dict[str, Any]] = {}
    for file, is_int8 in chosen:
        mine = [measured[c] for c in plan if c.file == file]
        entries[file] = _entry(
            mine[0], mine[1:], measured[fp32_baseline], margin, is_int8, rounds=rounds, batch_size=batch_size,
            threads=models[fp32_baseline].runtime_info.intra_op_threads,
            texts={"calibration": len(calibration), "timed": timed_texts, "source": source,
                   "sha256": _digest(calibration)},
        )  # fmt: skip
        for m in mine:
            say(_line(m, mine[0], measured[fp32_baseline]))
        say(f"{file}: {entries[file]['summary']}")
    if write:
        record_entries(folder, entries)
    return entries


def _positive(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise LightembedValueError(f"{name} must be an integer >= 1, got {value!r}.")
    return value


def _files(
    folder: Path, manifest: manifests.Manifest, default: Path, files: Sequence[str] | None, int8: bool
) -> list[tuple[str, bool]]:
    """(file, is int8) for each file to tune: those asked for (default: the default file), and every passed int8
    file with `int8`. An int8 file without `int8` is refused: the int8 drift is the user's choice to make."""
    from lightembed.hub import find_onnx_file

    names = [_relative(folder, p) for p in ([default] if not files else [find_onnx_file(folder, f) for f in files])]
    out: list[tuple[str, bool]] = []
    for name in names:
        record = manifest.files.get(name)
        if record is None or not (folder / name).is_file():
            raise LightembedValueError(f"{name} is not a file of {folder}'s {manifests.MANIFEST_NAME}.")
        is_int8 = record.precision == "int8"
        if is_int8 and not int8:
            raise LightembedValueError(f"{name} is an int8 file: pass --int8 (int8=True) to time int8 files.")
        if record.precision in ("float16", "bfloat16"):
            raise LightembedValueError(f"{name} computes in {record.precision} (a CUDA file): tune times CPU files.")
        out.append((name, is_int8))
    if int8:
        for record in manifest.files.values():
            if record.precision == "int8" and record.passed and (folder / record.path).is_file():
                if record.path not in (n for n, _ in out):
                    out.append((record.path, True))
    return out


def _relative(folder: Path, path: Path) -> str:
    relative = manifests.relative_path(folder, path)
    if relative is None:
        raise LightembedValueError(f"{path} is not inside {folder}.")
    return relative


def _fp32_of(folder: Path, manifest: manifests.Manifest, default: Path) -> str:
    """The fp32 file int8 files are compared with: the default file when it is fp32, else the manifest's first."""
    name = _relative(folder, default)
    if manifest.files[name].precision in (None, "float32"):
        return name
    found = next((r.path for r in manifest.files.values() if r.precision == "float32" and r.passed), None)
    if found is None:
        raise LightembedValueError(f"{folder} has no fp32 file to compare the int8 files with.")
    return found


def _fidelity(c: Candidate, m: Measured, own: dict[str, float]) -> tuple[bool, str | None]:
    """Whether `m` keeps its bar, and why not."""
    assert m.min_cosine is not None and m.mean_cosine is not None
    if c.backend == "openvino" and c.precision == "bf16" and "(bf16)" not in (m.runs or ""):
        return False, f"asked for bf16, OpenVINO runs {m.runs} on this CPU (no bf16 instructions): the f32 candidate"
    if not c.int8:
        if m.min_cosine < AUTO_MIN_COSINE:
            return False, f"min cos {m.min_cosine:.6f} < {AUTO_MIN_COSINE} to onnxruntime fp32"
        return True, None
    bar_min = INT8_MIN_COSINE
    if c.backend != "onnx" and c.file in own:
        bar_min = max(INT8_MIN_COSINE, own[c.file] - INT8_MARGIN)
    if m.min_cosine < bar_min or m.mean_cosine < INT8_MEAN_COSINE:
        return False, (
            f"min cos {m.min_cosine:.5f} (needs >= {bar_min:.5g}), mean {m.mean_cosine:.5f} "
            f"(needs >= {INT8_MEAN_COSINE}) to onnxruntime fp32"
        )
    return True, None


def _entry(
    baseline: Measured, others: Sequence[Measured], fp32: Measured, margin: float, is_int8: bool, **how: Any
) -> dict[str, Any]:
    """The lightembed.json entry of one file: key, versions, the choice, every candidate, how it was measured."""
    winner, best = pick(baseline, others, margin)
    speedup = winner.speedup(baseline) if winner is not baseline else 1.0
    choice = {
        "backend": winner.candidate.backend,
        "precision": winner.candidate.precision,
        "label": winner.candidate.label,
        "speedup": _rounded(speedup),
        "min_cosine": winner.min_cosine,
    }
    best_other = None
    if best is not None:
        best_other = {
            "label": best.candidate.label,
            "speedup": _rounded(best.speedup(baseline)),
            "min_cosine": best.min_cosine,
        }
    if winner is baseline:
        why = f"{baseline.candidate.label} kept"
        if best_other:
            fastest = f"{best_other['label']} {best_other['speedup']:.2f}x"
            why += f" (fastest other that passed: {fastest}, needs > {1 + margin:.2f}x)"
    else:
        why = f"{winner.candidate.label}: {speedup:.2f}x {baseline.candidate.label} at min cos {winner.min_cosine:.5f}"
    bars = (
        {"min_cosine": INT8_MIN_COSINE, "mean_cosine": INT8_MEAN_COSINE} if is_int8 else {"min_cosine": AUTO_MIN_COSINE}
    )
    return {
        "machine_class": machine.machine_class(),
        "versions": machine.runtime_versions(),
        "cpu": machine.cpu_identity()["model_name"],
        "choice": choice,
        "baseline": baseline.candidate.label + (" (this file)" if is_int8 else ""),
        "best_other": best_other,
        "summary": why,
        "margin": margin,
        "bars": {**bars, "against": f"{fp32.candidate.file} on onnxruntime"},
        **how,
        "candidates": [m.as_record(baseline, fp32) for m in (baseline, *others)],
        "measured_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _line(m: Measured, baseline: Measured, fp32: Measured) -> str:
    c = m.candidate
    if m.median is None:
        return f"  {c.label:<22} {c.file}: not timed ({m.error})"
    mark = "ok" if m.passed else f"refused: {m.error}"
    return (
        f"  {c.label:<22} {c.file}: median {m.median * 1000:8.1f} ms  {m.speedup(baseline):5.2f}x  "
        f"({m.speedup(fp32):.2f}x fp32)  min cos {m.min_cosine:.6f}  mean {m.mean_cosine:.6f}  {mark}"
    )


def _digest(texts: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()


def record_entries(folder: Path, entries: dict[str, dict[str, Any]]) -> None:
    """Store each file's entry in its `tuned` list in lightembed.json, replacing the one measured on the same
    machine class with the same versions and keeping those of other machines."""
    manifest = manifests.read(folder, strict=False)
    assert manifest is not None
    blocks: dict[str, list[dict[str, Any]]] = {}
    for file, entry in entries.items():
        record = manifest.files.get(file)
        key = manifests.Tuned.parse(entry)
        kept = [
            t.raw
            for t in (record.tuned if record else ())
            if key is None or not t.matches(key.machine_class, key.versions)
        ]
        blocks[file] = [*kept, entry]
    manifests.set_file_blocks(folder, manifests.TUNED, blocks)
