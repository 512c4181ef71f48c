"""The README's model-family coverage table is what scripts/coverage_table.py renders from the stored matrix run,
and that run covers every family the matrix test builds."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _script():
    spec = importlib.util.spec_from_file_location("coverage_table", ROOT / "scripts" / "coverage_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ROW = {
    "family": "Qwen3 decoder, last token", "examples": "Qwen3-Embedding-0.6B", "architecture": "Qwen3Model",
    "pooling": "lasttoken", "dense": False, "normalize": True, "prompts": True, "trust_remote_code": False,
    "fp32": {"status": "exact", "min_cos": 0.9999999999997},
    "optimized": {"level": "O3", "status": "refused", "reason": "..."},
    "int8": {"status": "reported", "mean_cos": 0.99889, "min_cos": 0.99607},
}  # fmt: skip
DATA = {"generated_by": "tests/test_family_matrix.py", "versions": {"torch": "2"}, "texts": 6, "int8_target": "x"}


def test_render_and_replace():
    script = _script()
    refused = {"family": "CLIP", "examples": "clip-ViT-B-32", "architecture": "CLIPModel", "reason": "a | b"}
    table = script.render({**DATA, "rows": [ROW], "refused": [refused]})
    assert "| CLIP | clip-ViT-B-32 | CLIPModel | - | refused by the exporter: a / b | - | - | - |" in table
    assert (
        "| Qwen3 decoder, last token | Qwen3-Embedding-0.6B | Qwen3Model | lasttoken + Normalize + prompts "
        "| exact: drift 3e-13 | O3 refused by the exporter | 0.9989 / 0.9961 | not run |"
    ) in table
    clip = {**ROW, "family": "CLIP", "examples": "clip-ViT-B-32", "architecture": "CLIPModel", "modules": "towers",
            "images": 10, "optimized": {"level": "O2", "status": "ok", "min_cos": 0.99999999},
            "int8": {"status": "refused", "reason": "..."}}  # fmt: skip
    table = script.render({**DATA, "rows": [ROW, clip], "refused": [refused]})
    assert "| CLIP | clip-ViT-B-32 | CLIPModel | towers | exact: drift 3e-13 | O2: drift 1e-08 " in table
    assert "| refused by the exporter | not run |" in table and "on 10 seeded images" in table
    assert "scripts/coverage_table.py --run" in table
    six = script.render({**DATA, "versions": {"torch": "2", "optimum": None}, "rows": [ROW], "refused": []})
    assert "torch 2." in six and "optimum" not in six  # the 6.x stack has no optimum
    readme = f"a\n{script.START}\nold\n{script.END}\nb\n"
    assert script.replace_section(readme, table) == f"a\n{script.START}\n{table}\n{script.END}\nb\n"
    with pytest.raises(ValueError, match="family-coverage"):
        script.replace_section("no markers", table)


def test_readme_table_is_rendered_from_the_stored_run():
    script = _script()
    data = json.loads(script.STORED.read_text(encoding="utf-8"))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert script.replace_section(readme, script.render(data)) == readme, (
        "README's coverage table is not the stored run's: run tests/test_family_matrix.py, then "
        "scripts/coverage_table.py"
    )


def test_stored_run_covers_every_family():
    from tests import families

    data = json.loads(_script().STORED.read_text(encoding="utf-8"))
    assert [row["family"] for row in data["rows"]] == list(families.MATRIX_ROWS)
    assert [row["family"] for row in data["refused"]] == [name for name, _, _ in families.REFUSED]


def test_render_cross_encoder_and_static_rows():
    script = _script()
    cross = {**ROW, "family": "ModernBERT cross-encoder", "modules": "cross-encoder, 1 label",
             "fp32": {"status": "exact", "max_abs": 2.7e-07}, "optimized": {"level": "O3", "status": "ok", "max_abs": 6e-05},
             "int8": {"status": "reported", "max_abs": 0.047, "pearson": 0.99643}}  # fmt: skip
    static = {**ROW, "family": "Static", "modules": "mean", "fp32": {"status": "exact", "min_cos": 1.0},
              "optimized": {"status": "n/a", "reason": "no graph"}, "int8": {"status": "n/a", "reason": "no graph"}}
    table = script.render({**DATA, "rows": [cross, static], "refused": []})
    assert ("| exact: max score diff 3e-07 | O3: max score diff 6e-05 | max score diff 5e-02, Pearson 0.9964 |"
            in table)  # fmt: skip
    assert "| Static | Qwen3-Embedding-0.6B | Qwen3Model | mean | exact: drift 0 | n/a (no graph) | n/a | not run |" in table


def test_render_llm_reranker_row():
    """A causal-LM reranker row: OpenVINO's f32 and default-precision drift beside int8, and the stack it ran on
    when it is not the table's (the 5.x stack cannot export these rerankers)."""
    script = _script()
    row = {**ROW, "family": "Qwen3 causal-LM reranker", "modules": "causal LM + LogitScore (yes - no), chat template",
           "fp32": {"status": "exact", "max_abs": 2e-06},
           "int8": {"status": "reported", "max_abs": 0.235, "pearson": 0.9907},
           "openvino": {"status": "ok", "max_abs": 1.9e-06, "default_precision": "bf16", "default_max_abs": 0.034},
           "versions": {"sentence-transformers": "6.2.0"}}  # fmt: skip
    table = script.render({**DATA, "versions": {"sentence-transformers": "5.7.0"}, "rows": [row], "refused": []})
    assert "| max score diff 2e-01, Pearson 0.9907; OpenVINO f32: max score diff 2e-06, its default bf16: 3e-02 |" in table
    assert "Qwen3 causal-LM reranker: run with sentence-transformers 6.2.0." in table
    same = script.render({**DATA, "versions": {"sentence-transformers": "6.2.0"}, "rows": [row], "refused": []})
    assert "run with" not in same
