"""`lightembed tune` (lightembed/tune.py) and the choice it records: backend=None on a machine of the measured class
runs the winner (lightembed.graphs.policy.decide), elsewhere the flag rule applies.

The policy tests fake the machine class with monkeypatch; the tune tests time the tiny graph on onnxruntime and
OpenVINO (the openvino extra is installed by scripts/setup.sh). No test asserts a speed: which candidate wins on
this machine is not a fact a unit test can know, so the tests check what is recorded and that the policy follows it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from lightembed import SentenceTransformer, machine, tune
from lightembed.cli import main
from lightembed.graphs import openvino as ovo
from lightembed.graphs import policy

HERE = {"machine": "x86_64", "vendor": "AuthenticAMD", "family": "25", "model": "17", "isa": ["avx2", "avx512_bf16"]}
VERSIONS = {"onnxruntime": "1.32.0", "openvino": "2026.4.1"}
AVX512_BF16 = frozenset({"avx2", "avx512f", "avx512_bf16", "avx512_vnni"})  # Zen 4: bf16 instructions, no AMX
AMX = frozenset({"avx2", "avx512f", "amx_tile", "amx_bf16"})


def _tuned(backend: str, label: str, precision: str | None = None, speedup: float = 1.0, key: dict | None = None,
           versions: dict | None = None, **extra) -> dict:  # fmt: skip
    return {
        "machine_class": key or HERE,
        "versions": versions or VERSIONS,
        "choice": {
            "backend": backend,
            "precision": precision,
            "label": label,
            "speedup": speedup,
            "min_cosine": 0.99996,
        },
        "measured_at": "2026-12-01T00:00:00Z",
        **extra,
    }


def _entry(*tuned: dict, **extra) -> dict:
    return {"path": "onnx/model.onnx", "sha256": "0" * 64, "passed": True, "tuned": list(tuned), **extra}


@pytest.fixture(autouse=True)
def _machine(monkeypatch, tmp_path):
    monkeypatch.delenv(policy.ENV_BACKEND, raising=False)  # conftest pins onnx for the rest of the suite
    monkeypatch.setenv(ovo.ENV_CACHE, str(tmp_path / "ov-cache"))
    monkeypatch.setattr(machine, "machine_class", lambda: dict(HERE))
    monkeypatch.setattr(machine, "runtime_versions", lambda: dict(VERSIONS))


# ----- the policy follows a matching record ------------------------------------------------------------------


def test_a_matching_record_picks_openvino_bf16_on_a_cpu_without_amx():
    entry = _entry(_tuned("openvino", "OpenVINO bf16", "bf16", 1.7))
    decision = policy.decide(None, cpu_only=True, manifest_entry=entry, flags=AVX512_BF16)
    assert decision.backend == "openvino"
    assert "measured on this machine class: OpenVINO bf16 1.70x onnxruntime fp32 at min cos 0.99996" in decision.reason
    assert decision.ov_config == {"INFERENCE_PRECISION_HINT": "bf16"}
    assert policy.choose_backend(None, cpu_only=True, manifest_entry=entry, flags=AVX512_BF16)[0] == "openvino"


@pytest.mark.parametrize(
    "key, versions",
    [
        ({**HERE, "model": "1"}, VERSIONS),  # another CPU model
        ({**HERE, "isa": ["avx2"]}, VERSIONS),  # other instruction sets
        (HERE, {**VERSIONS, "openvino": "2025.1.0"}),  # measured with another OpenVINO
        (HERE, {**VERSIONS, "onnxruntime": "1.20.0"}),
    ],
)
def test_a_record_of_another_machine_class_or_version_is_ignored(key, versions):
    entry = _entry(_tuned("openvino", "OpenVINO bf16", "bf16", 1.7, key=key, versions=versions))
    backend, why = policy.choose_backend(None, cpu_only=True, manifest_entry=entry, flags=AVX512_BF16)
    assert (backend, why) == ("onnx", "the CPU has no AMX-BF16")  # today's rule


def test_a_matching_record_that_kept_fp32_overrides_the_amx_rule():
    exporter = {"inference_precision": "bf16", "metrics": {"min_cosine": 0.99995},
                "texts_check": {"texts": 56, "min_cosine": 0.99995}}  # fmt: skip
    kept = _tuned("onnx", "onnxruntime fp32", best_other={"label": "OpenVINO bf16", "speedup": 1.04})
    assert (
        policy.choose_backend(None, cpu_only=True, manifest_entry=_entry(openvino=exporter), flags=AMX)[0] == "openvino"
    )
    backend, why = policy.choose_backend(None, cpu_only=True, manifest_entry=_entry(kept, openvino=exporter), flags=AMX)
    assert backend == "onnx"
    assert why.startswith(
        "measured on this machine class: onnxruntime fp32 kept; the fastest other, OpenVINO bf16, ran 1.04x"
    )


def test_the_record_decides_only_on_cpu_and_never_over_an_explicit_backend(monkeypatch):
    entry = _entry(_tuned("openvino", "OpenVINO bf16", "bf16", 1.7))
    assert policy.choose_backend(None, cpu_only=False, manifest_entry=entry) == ("onnx", "not on CPU")
    assert policy.choose_backend("onnx", cpu_only=True, manifest_entry=entry) == ("onnx", "requested")
    monkeypatch.setenv(policy.ENV_BACKEND, "onnx")
    assert policy.choose_backend(None, cpu_only=True, manifest_entry=entry)[0] == "onnx"


def test_a_record_for_openvino_without_the_extra_runs_onnxruntime(monkeypatch):
    monkeypatch.setattr(ovo, "is_installed", lambda: False)
    entry = _entry(_tuned("openvino", "OpenVINO bf16", "bf16", 1.7))
    backend, why = policy.choose_backend(None, cpu_only=True, manifest_entry=entry, flags=AVX512_BF16)
    assert backend == "onnx" and "openvino extra is not installed" in why


# ----- the choice: fidelity first, then a margin -------------------------------------------------------------


def _measured(label: str, seconds: float, passed: bool = True) -> tune.Measured:
    return tune.Measured(tune.Candidate(label, "onnx/model.onnx", "openvino"), [seconds] * 3, 1.0, 1.0, passed)


@pytest.mark.parametrize(
    "seconds, passed, winner",
    [
        (1.0, True, "fp32"),  # a tie keeps the exact path
        (0.95, True, "fp32"),  # 1.05x: under the 10% margin
        (0.8, True, "fast"),  # 1.25x
        (0.3, False, "fp32"),  # fastest, but it failed its fidelity bar
    ],
)
def test_pick_keeps_fp32_within_the_margin(seconds, passed, winner):
    chosen, _ = tune.pick(_measured("fp32", 1.0), [_measured("fast", seconds, passed)], margin=0.1)
    assert chosen.candidate.label == winner


def test_pick_uses_medians_so_one_slow_round_does_not_decide():
    baseline = _measured("fp32", 1.0)
    noisy = tune.Measured(tune.Candidate("fast", "f", "openvino"), [0.7, 0.7, 5.0], 1.0, 1.0, True)
    assert tune.pick(baseline, [noisy])[0] is noisy


# ----- tune on the tiny model --------------------------------------------------------------------------------


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def exported(tiny_model: Path) -> Path:
    """The tiny model with a lightembed.json listing its fp32 file and an int8 file (a copy standing in for one)."""
    onnx = tiny_model / "onnx"
    shutil.copyfile(onnx / "model.onnx", onnx / "model_qint8_rowwise.onnx")
    files = [
        {"path": "onnx/model.onnx", "sha256": _sha(onnx / "model.onnx"), "passed": True, "kind": "fp32"},
        {"path": "onnx/model_qint8_rowwise.onnx", "sha256": _sha(onnx / "model_qint8_rowwise.onnx"), "passed": True,
         "kind": "quantized", "quantization": {"target": "rowwise"}},
    ]  # fmt: skip
    (tiny_model / "lightembed.json").write_text(json.dumps({"format_version": 1, "files": files}))
    return tiny_model


def _manifest(folder: Path) -> dict:
    return {f["path"]: f for f in json.loads((folder / "lightembed.json").read_text())["files"]}


def test_tune_records_the_timed_choice_and_the_next_load_follows_it(exported):
    other = _tuned("openvino", "OpenVINO bf16", "bf16", 1.5, key={**HERE, "model": "99"})  # another machine's
    data = json.loads((exported / "lightembed.json").read_text())
    data["files"][0]["tuned"] = [other]
    (exported / "lightembed.json").write_text(json.dumps(data))

    entries = tune.tune(exported, rounds=2, timed_texts=16)
    entry = entries["onnx/model.onnx"]
    labels = [c["label"] for c in entry["candidates"]]
    assert labels == ["onnxruntime fp32", "OpenVINO f32", "OpenVINO bf16"]
    assert all(len(c) and c["median_seconds"] > 0 for c in entry["candidates"][:2])
    assert entry["candidates"][1]["min_cosine"] > 0.9999 and entry["candidates"][1]["passed"]
    assert entry["machine_class"] == HERE and entry["versions"] == VERSIONS
    assert entry["choice"]["label"] in labels and entry["rounds"] == 2 and entry["margin"] == 0.1
    assert "onnx/model_qint8_rowwise.onnx" not in entries  # int8 only with the opt-in

    stored = _manifest(exported)["onnx/model.onnx"]["tuned"]
    assert stored[0] == other and stored[1]["choice"] == entry["choice"]  # another machine's entry is kept
    assert "tuned" not in _manifest(exported)["onnx/model_qint8_rowwise.onnx"]

    tune.tune(exported, rounds=1, timed_texts=8)  # tuning again replaces this machine's entry
    assert len(_manifest(exported)["onnx/model.onnx"]["tuned"]) == 2

    model = SentenceTransformer(str(exported))
    assert model.backend_reason.startswith("measured on this machine class: ")
    assert model._backend == _manifest(exported)["onnx/model.onnx"]["tuned"][1]["choice"]["backend"]


def test_a_timed_openvino_choice_opens_with_its_precision_hint(exported, monkeypatch):
    data = json.loads((exported / "lightembed.json").read_text())
    data["files"][0]["tuned"] = [_tuned("openvino", "OpenVINO bf16", "bf16", 1.7)]
    (exported / "lightembed.json").write_text(json.dumps(data))
    seen = []
    real = ovo.open_file
    monkeypatch.setattr(
        ovo, "open_file", lambda path, options: seen.append(dict(options.ov_config)) or real(path, options)
    )
    model = SentenceTransformer(str(exported))
    assert model._backend == "openvino" and "OpenVINO bf16 1.70x" in model.backend_reason
    assert seen == []  # onnxruntime answers first (graphs.handoff); OpenVINO opens in the background
    assert model._opened.graph.wait(120) and seen == [{"INFERENCE_PRECISION_HINT": "bf16"}]
    other = SentenceTransformer(str(exported), model_kwargs={"ov_config": {"INFERENCE_PRECISION_HINT": "f32"}})
    assert other._opened.graph.wait(120)
    assert seen[-1] == {"INFERENCE_PRECISION_HINT": "f32"}  # the caller's setting wins


def test_int8_files_are_timed_only_with_the_opt_in(exported):
    with pytest.raises(ValueError, match="is an int8 file: pass --int8"):
        tune.tune(exported, ["onnx/model_qint8_rowwise.onnx"], rounds=1, timed_texts=8)
    entries = tune.tune(exported, int8=True, rounds=1, timed_texts=8)
    int8 = entries["onnx/model_qint8_rowwise.onnx"]
    assert [c["label"] for c in int8["candidates"]] == ["onnxruntime int8", "OpenVINO int8 file"]
    assert (
        int8["bars"]["min_cosine"] == policy.INT8_MIN_COSINE and int8["bars"]["mean_cosine"] == policy.INT8_MEAN_COSINE
    )
    assert int8["candidates"][0]["x_fp32"] is not None
    assert _manifest(exported)["onnx/model_qint8_rowwise.onnx"]["tuned"][0]["choice"] == int8["choice"]


def test_tune_checks_fidelity_before_speed(exported, monkeypatch):
    """A candidate whose vectors drift is refused whatever its speed (a seeded different graph stands in)."""
    from tests.tiny import write_graph

    write_graph(exported / "onnx" / "model_qint8_rowwise.onnx", seed=3)
    data = json.loads((exported / "lightembed.json").read_text())
    data["files"][1]["sha256"] = _sha(exported / "onnx" / "model_qint8_rowwise.onnx")
    (exported / "lightembed.json").write_text(json.dumps(data))
    int8 = tune.tune(exported, int8=True, rounds=1, timed_texts=8, write=False)["onnx/model_qint8_rowwise.onnx"]
    assert not int8["candidates"][0]["passed"] and "needs >= 0.97" in int8["candidates"][0]["error"]


def test_cli_tune(exported, capsys):
    assert main(["tune", str(exported), "--rounds", "1", "--texts", "8", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "onnxruntime fp32" in out and "OpenVINO f32" in out and "onnx/model.onnx:" in out
    assert "tuned" not in _manifest(exported)["onnx/model.onnx"]
    assert main(["tune", str(exported), "--file", "onnx/model_qint8_rowwise.onnx"]) == 2
    assert "pass --int8" in capsys.readouterr().err
    assert main(["tune", str(exported), "--rounds", "0"]) == 2


def test_the_exporter_tunes_on_its_machine_with_its_calibration_texts(tmp_path):
    from lightembed_export import export_model

    from tests.test_export import _tiny_st

    out = tmp_path / "out"
    export_model(_tiny_st(tmp_path / "st"), out, tune=True, verbose=False)
    (entry,) = _manifest(out)["onnx/model.onnx"]["tuned"]
    assert entry["texts"]["source"].startswith("the exporter's calibration set")
    assert entry["machine_class"] == HERE and entry["candidates"][0]["label"] == "onnxruntime fp32"


def test_the_exporter_tunes_by_default_where_openvino_is_installed(tmp_path, monkeypatch):
    """Issue 22: a folder exported on a CPU without AMX (an AMD Zen 4) must carry that machine's measurement, or
    the AMX flag rule keeps OpenVINO bf16 off there: tuning is the default wherever OpenVINO can be a candidate."""
    from lightembed_export import export_model
    from lightembed_export.cli import build_parser

    from lightembed.graphs import openvino
    from tests.test_export import _tiny_st

    monkeypatch.delenv("LIGHTEMBED_EXPORT_TUNE", raising=False)
    src = _tiny_st(tmp_path / "st")
    assert openvino.is_installed()  # the project's venv installs the extra: this is the case the default is for
    export_model(src, tmp_path / "default", verbose=False)
    (entry,) = _manifest(tmp_path / "default")["onnx/model.onnx"]["tuned"]
    assert entry["machine_class"] == HERE and any(c["label"] == "OpenVINO bf16" for c in entry["candidates"])
    monkeypatch.setattr(openvino, "is_installed", lambda: False)
    export_model(src, tmp_path / "no_openvino", verbose=False)
    assert "tuned" not in _manifest(tmp_path / "no_openvino")["onnx/model.onnx"]
    monkeypatch.undo()
    monkeypatch.setenv("LIGHTEMBED_EXPORT_TUNE", "0")
    export_model(src, tmp_path / "off", verbose=False)
    assert "tuned" not in _manifest(tmp_path / "off")["onnx/model.onnx"]
    parser = build_parser()
    assert parser.parse_args(["m", "-o", "x"]).tune is None
    assert parser.parse_args(["m", "-o", "x", "--no-tune"]).tune is False
    assert parser.parse_args(["m", "-o", "x", "--tune"]).tune is True


def test_a_load_with_a_matching_record_times_nothing_and_stays_light(exported):
    """Cold start: the policy reads the record (real machine class, in a fresh process); tune's module and
    importlib.metadata (~50 ms to import) stay out of the load."""
    import subprocess
    import sys

    code = (
        "import json, sys\nfrom lightembed import SentenceTransformer, machine\n"
        "m = SentenceTransformer(sys.argv[1]); m.encode('hi')\n"
        "print(json.dumps([m.backend_reason, machine.machine_class(), machine.runtime_versions(),"
        " sorted(k for k in ('lightembed.tune', 'importlib.metadata') if k in sys.modules)]))"
    )
    real = subprocess.run([sys.executable, "-c", "import json; from lightembed import machine; print(json.dumps("
                           "[machine.machine_class(), machine.runtime_versions()]))"],
                          capture_output=True, text=True, cwd=Path(__file__).parent.parent, timeout=120)  # fmt: skip
    key, versions = json.loads(real.stdout)
    data = json.loads((exported / "lightembed.json").read_text())
    data["files"][0]["tuned"] = [_tuned("onnx", "onnxruntime fp32", key=key, versions=versions)]
    (exported / "lightembed.json").write_text(json.dumps(data))
    env = {k: v for k, v in __import__("os").environ.items() if k != policy.ENV_BACKEND}
    proc = subprocess.run([sys.executable, "-c", code, str(exported)], capture_output=True, text=True,
                          cwd=Path(__file__).parent.parent, timeout=120, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    reason, _, _, loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert reason.startswith("measured on this machine class: onnxruntime fp32 kept")
    assert loaded == []


def test_cli_tune_takes_calibration_texts_from_a_file(exported, tmp_path, capsys, monkeypatch):
    seen = {}
    real = tune.tune

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(tune, "tune", spy)
    texts = tmp_path / "texts.txt"
    texts.write_text("the cat sat\n\nhello world\n", encoding="utf-8")
    assert main(["tune", str(exported), "--texts-file", str(texts), "--rounds", "1", "--texts", "4", "--dry-run"]) == 0
    assert seen["texts"] == ["the cat sat", "hello world"] and seen["texts_source"] == "texts.txt"
    texts.write_text("\n \n", encoding="utf-8")
    assert main(["tune", str(exported), "--texts-file", str(texts)]) == 2
    assert "no non-blank lines" in capsys.readouterr().err


def test_a_candidate_that_compiles_but_cannot_run_is_recorded_not_fatal(exported, monkeypatch):
    """OpenVINO compiled the fused per-token int8 file and then failed in infer (its per-axis QuantizeLinear):
    tune raised out and recorded nothing. Such a candidate is now reported as unable to run, and the others count."""
    from lightembed.encoder import SentenceTransformer

    real = SentenceTransformer.encode

    def encode(self, *args, **kwargs):
        if self.get_backend() == "openvino" and "rowwise" in str(self.runtime_info.onnx_file):
            raise RuntimeError("Exception from src/plugins/intel_cpu: FakeQuantize shapes are inconsistent")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(SentenceTransformer, "encode", encode)
    lines: list[str] = []
    entries = tune.tune(exported, int8=True, rounds=1, timed_texts=8, say=lines.append)
    assert any("cannot run" in line and "FakeQuantize" in line for line in lines)
    record = entries["onnx/model_qint8_rowwise.onnx"]
    broken = [c for c in record["candidates"] if c.get("error") and "FakeQuantize" in c["error"]]
    assert broken and record["choice"]["backend"] == "onnx"  # onnxruntime still ran it
