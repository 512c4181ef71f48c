"""Folders saved by sentence-transformers 6.2 give 6.2's vectors in lightembed: the 6.x module options (Dense
use_residual, Normalize and Dense on token embeddings, weightedmean with left padding) on tiny seeded BERTs that
6.2 builds, saves and runs on torch in its own venv (tests/st6.py, tests/st6_venv.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lightembed import SentenceTransformer
from tests.st6 import QUERIES, TEXTS
from tests.st6_venv import build

CASES = ("residual", "normalize_tokens", "token_dense", "weightedmean_left")


@pytest.fixture(scope="module")
def st6(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("st6"), *CASES)


def min_cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).min())


@pytest.mark.parametrize("case", CASES)
def test_folder_saved_by_6_2_gives_its_vectors(st6: Path, case: str) -> None:
    refs = np.load(st6 / case / "reference.npz")
    model = SentenceTransformer(str(st6 / case))
    emb = model.encode(TEXTS)
    assert emb.shape == refs["texts"].shape and model.get_sentence_embedding_dimension() == emb.shape[1]
    print(f"PARITY st6 {case}: min_cos={min_cos(emb, refs['texts']):.7f}")
    assert min_cos(emb, refs["texts"]) >= 0.99999
    np.testing.assert_allclose(emb, refs["texts"], atol=2e-5)  # the lengths too (Normalize before Pooling)
    assert min_cos(model.encode_query(QUERIES), refs["queries"]) >= 0.99999
    tokens = np.concatenate(model.encode(TEXTS, output_value="token_embeddings"))
    assert min_cos(tokens, refs["tokens"]) >= 0.99999  # the modules on token embeddings ran on these too
    if "prompted" in refs:
        assert min_cos(model.encode(TEXTS, prompt_name="query"), refs["prompted"]) >= 0.99999


def test_modules_on_token_embeddings_run_before_pooling(st6: Path) -> None:
    model = SentenceTransformer(str(st6 / "normalize_tokens"))
    assert [type(m).__name__ for m in model.config.pre] == ["Normalize"] and not model.config.post
    tokens = model.encode(TEXTS, output_value="token_embeddings")
    np.testing.assert_allclose(np.linalg.norm(tokens[0], axis=1), 1.0, rtol=1e-5)
    dense = SentenceTransformer(str(st6 / "token_dense"))
    assert dense.get_sentence_embedding_dimension() == 8 and dense.encode(TEXTS[0]).shape == (8,)
    assert [type(m).__name__ for m in dense.config.post] == ["Dense", "LayerNorm", "Normalize"]
    assert not dense.config.has_normalize  # its Normalize writes the token embeddings, not the sentence one


def _as_saved_by(folder: Path, out: Path, version: str | None) -> Path:
    shutil.copytree(folder, out)
    path = out / "config_sentence_transformers.json"
    config = json.loads(path.read_text())
    if version is None:
        config.pop("__version__")
    else:
        config["__version__"]["sentence_transformers"] = version
    path.write_text(json.dumps(config))
    return out


def test_weightedmean_follows_the_version_that_saved_the_folder(st6: Path, tmp_path: Path) -> None:
    refs = np.load(st6 / "weightedmean_left" / "reference.npz")
    six = SentenceTransformer(str(st6 / "weightedmean_left"))
    assert six.tokenizer_wrapper.padding_side == "left" and six.config.pooling.weights_from_first_token
    # 5.x weighted each token by its column + 1 in the left-padded batch (one batch of all texts here; 6.2's
    # token embeddings of a left-padded row keep the padding in front, as 5.x's do)
    mask = six.tokenize(TEXTS)["attention_mask"].astype(np.float64)
    tokens = refs["tokens"].reshape(len(TEXTS), mask.shape[1], -1)
    weights = (mask * np.arange(1, mask.shape[1] + 1))[:, :, None]
    old_rule = (weights * tokens).sum(1) / weights.sum(1)
    assert min_cos(old_rule, refs["texts"]) < 0.9999  # the two rules differ on these texts
    for version in ("5.7.0", None):
        old = SentenceTransformer(str(_as_saved_by(st6 / "weightedmean_left", tmp_path / str(version), version)))
        assert not old.config.pooling.weights_from_first_token
        assert min_cos(old.encode(TEXTS), old_rule) >= 0.99999
    assert min_cos(six.encode(TEXTS), refs["texts"]) >= 0.99999


def _edit(folder: Path, out: Path, relative: str, **changes: object) -> Path:
    shutil.copytree(folder, out)
    path = out / relative
    config = json.loads(path.read_text()) if path.is_file() else {}
    config.update(changes)
    path.write_text(json.dumps(config))
    return out


@pytest.mark.parametrize(
    ("relative", "changes", "message"),
    [
        ("sentence_bert_config.json", {"processing_kwargs": {"text": {"padding_side": "left"}}}, "processing_kwargs"),
        ("sentence_bert_config.json", {"modality_config": {"message": {"method": "forward",
                                       "method_output_name": "last_hidden_state"}}}, "'message' modality"),
        ("sentence_bert_config.json", {"query_length": 8}, "query_length.*MultiVectorEncoder"),
        ("1_Normalize/config.json", {"module_input_name": "scores"}, "module_input_name='scores'"),
    ],
)  # fmt: skip
def test_6x_options_lightembed_does_not_run_are_refused_by_name(
    st6: Path, tmp_path: Path, relative: str, changes: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        SentenceTransformer(str(_edit(st6 / "normalize_tokens", tmp_path / "edited", relative, **changes)))


@pytest.mark.parametrize(
    ("type_name", "message"),
    [
        ("sentence_transformers.base.modules.router.Router", "Router.*different modules"),
        ("sentence_transformers.multi_vector_encoder.modules.multi_vector_mask.MultiVectorMask", "MultiVectorEncoder"),
        ("sentence_transformers.sentence_transformer.modules.weighted_layer_pooling.WeightedLayerPooling",
         "every hidden layer"),
        ("sentence_transformers.sentence_transformer.modules.lstm.LSTM", "LSTM.*no transformer graph"),
    ],
)  # fmt: skip
def test_6x_modules_lightembed_does_not_run_are_refused_by_name(
    st6: Path, tmp_path: Path, type_name: str, message: str
) -> None:
    folder = tmp_path / "edited"
    shutil.copytree(st6 / "normalize_tokens", folder)
    modules = json.loads((folder / "modules.json").read_text())
    modules.append({"idx": 3, "name": "3", "path": "3_X", "type": type_name})
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ValueError, match=message):
        SentenceTransformer(str(folder))


def test_dropout_is_a_no_op_and_a_dense_before_pooling_on_the_sentence_is_refused(st6: Path, tmp_path: Path) -> None:
    folder = tmp_path / "dropout"
    shutil.copytree(st6 / "residual", folder)
    modules = json.loads((folder / "modules.json").read_text())
    modules.insert(1, {"idx": 0, "name": "d", "path": "0_Dropout",
                       "type": "sentence_transformers.sentence_transformer.modules.dropout.Dropout"})  # fmt: skip
    (folder / "modules.json").write_text(json.dumps(modules))
    np.testing.assert_allclose(
        SentenceTransformer(str(folder)).encode(TEXTS), np.load(st6 / "residual" / "reference.npz")["texts"], atol=1e-5
    )
    bad = _edit(st6 / "token_dense", tmp_path / "bad", "1_Dense/config.json", module_input_name="sentence_embedding")
    with pytest.raises(ValueError, match="before any Pooling"):
        SentenceTransformer(str(bad))


def test_static_embedding_saved_by_6_2_gives_its_vectors(tmp_path: Path) -> None:
    """A StaticEmbedding folder saved by 6.2 (its module path, its table) runs from the folder as 6.2 runs it."""
    folder = build(tmp_path, "static") / "static"
    refs = np.load(folder / "reference.npz")
    model = SentenceTransformer(str(folder))
    assert model.runtime_info.providers == ["NumPy (static table)"]
    np.testing.assert_allclose(model.encode(TEXTS), refs["texts"], atol=1e-6)
    np.testing.assert_allclose(model.encode_query(QUERIES), refs["queries"], atol=1e-6)
