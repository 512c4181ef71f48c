"""lightembed_export.architectures: which checkpoints take which export path, and the config round trip check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lightembed_export import UnsupportedModelError
from lightembed_export import architectures as arch
from lightembed_export.tasks import FEATURE_EXTRACTION, TEXT_CLASSIFICATION


def _write_config(folder: Path, **config) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder


def test_remote_code_is_detected_from_auto_map(tmp_path):
    # nomic-embed-text's auto_map, with a model_type no transformers release ships (transformers 5 ships nomic_bert)
    remote = {
        "model_type": "acme_nomic_bert",
        "auto_map": {"AutoConfig": "configuration_hf_nomic_bert.NomicBertConfig",
                     "AutoModel": "nomic-ai/nomic-bert-2048--modeling_hf_nomic_bert.NomicBertModel"},
    }  # fmt: skip
    folder = _write_config(tmp_path / "nomic", **remote)
    assert arch.needs_remote_code(remote)
    assert arch.remote_code_files(folder, remote) == ["configuration_hf_nomic_bert.py", "modeling_hf_nomic_bert.py"]
    assert not arch.needs_remote_code({"model_type": "bert", "auto_map": {"AutoModel": "x.Y"}})  # known type
    assert not arch.needs_remote_code({"model_type": "bert"})
    with pytest.raises(UnsupportedModelError, match="--trust-remote-code") as refused:
        arch.check_supported(folder, "NomicBertModel", "acme_nomic_bert", FEATURE_EXTRACTION, trust_remote_code=False)
    assert refused.value.architecture == "NomicBertModel"
    with pytest.raises(UnsupportedModelError, match="feature-extraction"):
        arch.check_supported(folder, "NomicBertModel", "acme_nomic_bert", TEXT_CLASSIFICATION, trust_remote_code=True)
    plan = arch.plan_export(folder, FEATURE_EXTRACTION, trust_remote_code=True)
    assert plan.custom and plan.trust_remote_code


def test_t5_exports_the_encoder_alone(tmp_path):
    folder = _write_config(tmp_path / "t5", model_type="t5")
    plan = arch.plan_export(folder, FEATURE_EXTRACTION)
    assert plan.custom and plan.model_class == "T5EncoderModel" and plan.inputs == ("input_ids", "attention_mask")
    assert not arch.plan_export(_write_config(tmp_path / "bert", model_type="bert"), FEATURE_EXTRACTION).custom


def test_gemma3_bidirectional_window_survives_the_round_trip(tmp_path):
    from transformers import AutoConfig, Gemma3TextConfig

    config = Gemma3TextConfig(
        vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
        head_dim=8, intermediate_size=32, sliding_window=512, use_bidirectional_attention=True,
    )  # fmt: skip
    assert config.sliding_window == 257  # what EmbeddingGemma's 512 loads as
    config.save_pretrained(str(tmp_path))
    reloaded = AutoConfig.from_pretrained(str(tmp_path)).sliding_window
    if reloaded == 129:  # transformers 4: halved again on every load; the exporter rewrites the stored value
        rewritten = arch.keep_config_on_reload(tmp_path, config)
        assert rewritten == {"sliding_window": {"stored": 512, "loads_as": 257}}
    else:  # transformers 5 saves the value it loads from: nothing to rewrite
        assert reloaded == 257
        assert arch.keep_config_on_reload(tmp_path, config) == {}
    assert AutoConfig.from_pretrained(str(tmp_path)).sliding_window == 257
    assert arch.keep_config_on_reload(tmp_path, config) == {}


def test_config_that_changes_on_reload_is_refused(tmp_path):
    from transformers import BertConfig

    config = BertConfig(
        vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, architectures=["BertModel"]
    )
    config.save_pretrained(str(tmp_path))
    data = json.loads((tmp_path / "config.json").read_text())
    data["hidden_act"] = "relu"
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(UnsupportedModelError, match=r"BertModel.*hidden_act: 'gelu' -> 'relu'"):
        arch.keep_config_on_reload(tmp_path, config)
