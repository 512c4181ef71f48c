"""benchmarks/serve.py's answer check: a float32 model's vectors must match in-process encode() within 1e-4; a
bf16 one's (OpenVINO's automatic choice on AMX-BF16 CPUs), whose rounding depends on the batch a text ran in,
within the cosine the backend was chosen with."""

from __future__ import annotations

import base64
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from benchmarks.serve import answer_tolerance, embed_check
from lightembed.graphs.policy import AUTO_MIN_COSINE


def _model(*providers: str) -> SimpleNamespace:
    return SimpleNamespace(runtime_info=SimpleNamespace(providers=list(providers)))


def _answer(vectors: np.ndarray) -> dict:
    return {"data": [{"embedding": base64.b64encode(v.astype("<f4").tobytes()).decode()} for v in vectors]}


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_the_tolerance_follows_the_precision_the_model_runs_in():
    assert answer_tolerance(_model("CPUExecutionProvider"))["max_abs"] == 1e-4
    assert answer_tolerance(_model("OpenVINOExecutionProvider (f32)"))["max_abs"] == 1e-4
    bf16 = answer_tolerance(_model("OpenVINOExecutionProvider (bf16)"))
    assert bf16["min_cosine"] == AUTO_MIN_COSINE and "max_abs" not in bf16


def test_a_bf16_sized_difference_passes_only_the_bf16_check_and_a_wrong_vector_neither():
    rng = np.random.default_rng(0)
    want = _unit(rng.standard_normal((4, 384)).astype(np.float32))
    rounded = _unit(want + rng.uniform(-9e-4, 9e-4, want.shape).astype(np.float32))  # what bf16 batches differ by
    wrong = _unit(np.roll(want, 1, axis=0))  # another text's vector
    fp32 = embed_check(want, answer_tolerance(_model("CPUExecutionProvider")))
    bf16 = embed_check(want, answer_tolerance(_model("OpenVINOExecutionProvider (bf16)")))
    assert fp32(_answer(want)) and bf16(_answer(want))
    assert not fp32(_answer(rounded)) and bf16(_answer(rounded))
    assert not fp32(_answer(wrong)) and not bf16(_answer(wrong))
    assert not bf16(_answer(want[:3]))  # a vector missing


def test_the_overload_and_burst_scenarios_run_against_a_real_server(tmp_path):
    """Both of issue 24's loads end to end on a tiny model (seconds, not a measurement): every answer is a 200 or a
    429, every 200 right, and the server's own timing came back with them."""
    from benchmarks.serve import burst, overload
    from tests.tiny import make_model

    folder = str(make_model(tmp_path / "emb"))
    loaded = overload(folder, clients=4, seconds=2, extra=[])
    assert loaded["requests"] > 0 and set(loaded["by_status"]) <= {"200", "429"} and loaded["wrong_answers"] == 0
    assert loaded["refusal_server_ms_max"] is None or loaded["refusal_server_ms_max"] <= loaded["refusal_ms_max"]
    burst_result = burst(folder, 6, [])
    assert sum(burst_result["by_status"].values()) == 6 and set(burst_result["by_status"]) <= {"200", "429"}
    assert burst_result["wrong_answers"] == 0 and burst_result["server_read_max_ms"] is not None
    assert all(burst_result["server_max_ms_by_status"][k] <= burst_result["max_ms_by_status"][k]
               for k in burst_result["by_status"])


def test_run_keeps_the_sections_other_benchmarks_wrote_in_results_md():
    # benchmarks/run.py rewrote the whole file and dropped ~2,300 hand-written lines (the server, pool, CPU-class
    # sections) when run once for a side question
    from benchmarks.results_file import KEEP_MARKER, with_kept_sections

    existing = f"# old run\nold table\n\n{KEEP_MARKER}\n## Server\nby hand\n"
    header = f"# new run\nabove `{KEEP_MARKER}` is generated\nnew table\n"
    assert with_kept_sections(header, existing) == header + f"\n{KEEP_MARKER}\n## Server\nby hand\n"
    assert with_kept_sections("# new run\n", None) == "# new run\n"
    assert with_kept_sections("# new run\n", "# a file run.py wrote alone\n") == "# new run\n"
    shipped = (Path(__file__).resolve().parents[1] / "benchmarks" / "RESULTS.md").read_text()
    assert f"\n{KEEP_MARKER}\n## Appendix" in shipped
