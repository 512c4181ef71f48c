"""Causal-LM rerankers (sentence-transformers 6's CrossEncoder with LogitScore) on a tiny seeded Qwen3 with a
Qwen3-Reranker-style chat template: the pair tokens against sentence-transformers', truncation with the template's
tail restored, the graph's two outputs, and the refusals (right padding, LogitScore options, a missing template)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests import families

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the sentence-transformers folder, its export) of the tiny Qwen3 reranker."""
    from lightembed_export import export_model

    root = tmp_path_factory.mktemp("llm-reranker")
    src = families.LLM_RERANKERS[0].make(root / "st")
    export_model(src, root / "onnx", verbose=False, preoptimize=False)
    return src, root / "onnx"


@pytest.fixture(scope="module")
def st_model(exported: tuple[Path, Path]) -> Any:
    import sentence_transformers

    return sentence_transformers.CrossEncoder(str(exported[0]), device="cpu")


def _copy(out: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "copy"
    shutil.copytree(out, folder)
    return folder


@pytest.mark.parametrize("prompt", [None, "Judge {document} <|im_end|> strictly: "])
def test_tokens_are_sentence_transformers(exported: tuple[Path, Path], st_model: Any, prompt: str | None) -> None:
    """Every pair (special tokens and Jinja syntax in its texts, past max_seq_length) becomes the tokens
    sentence-transformers' chat-template rendering gives, left-padded; a cut row ends in the template's tail."""
    import lightembed
    from lightembed.llm_reranker import SystemPair

    ours = lightembed.CrossEncoder(str(exported[1]), device="cpu")
    pairs = families.LLM_PAIRS
    expected = st_model[0].preprocess([list(p) for p in pairs], prompt=prompt)
    items = [SystemPair(prompt, a, b) for a, b in pairs] if prompt else pairs
    batch = ours.pad(ours.tokenize_inputs(items))
    np.testing.assert_array_equal(batch.attention_mask, expected["attention_mask"].numpy())
    real = batch.attention_mask == 1
    np.testing.assert_array_equal(batch.input_ids[real], expected["input_ids"].numpy()[real])
    assert (batch.attention_mask[:, -1] == 1).all()  # left padding: the last position is real

    cut = np.nonzero(batch.lengths >= ours.max_seq_length)[0]
    assert cut.size  # the long texts were truncated, so the restored tail is what is compared above
    conversation = st_model[0].input_formatter.pair_to_messages(list(pairs[cut[0]]))
    if prompt:
        conversation = st_model[0].input_formatter.prepend_prompt_to_messages([conversation], prompt)[0]
    tail = st_model[0]._chat_template_suffix_ids(conversation, {}, {})
    assert tail and list(batch.input_ids[cut[0], -len(tail) :]) == tail


def test_graph_outputs_only_the_two_logits(exported: tuple[Path, Path]) -> None:
    """No KV cache in or out: input_ids, attention_mask, position_ids in, (batch, 2) last-token logits out, the
    token ids they are in the metadata."""
    import onnx

    from lightembed.llm_reranker import TOKEN_IDS_KEY

    model = onnx.load(str(exported[1] / "onnx" / "model.onnx"), load_external_data=False)
    assert [i.name for i in model.graph.input] == ["input_ids", "attention_mask", "position_ids"]
    (output,) = model.graph.output
    dims = output.type.tensor_type.shape.dim
    assert output.name == "logits" and len(dims) == 2 and dims[1].dim_value == 2
    config = json.loads((exported[1] / "1_LogitScore" / "config.json").read_text(encoding="utf-8"))
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props[TOKEN_IDS_KEY]) == [config["true_token_id"], config["false_token_id"]]


def test_right_padding_is_refused(exported: tuple[Path, Path]) -> None:
    import lightembed

    ours = lightembed.CrossEncoder(str(exported[1]), device="cpu")
    ours.tokenizer_wrapper.padding_side = "right"
    with pytest.raises(ValueError, match="left-padded"):
        ours.predict(families.LLM_PAIRS[:4])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"temperature": 2.0}, r"LogitScore options \['temperature'\]"),
        ({"module_input_name": "scores"}, "module_input_name='scores'"),
        ({"true_token_id": 5}, "does not output the last-token logits"),
    ],
)
def test_logit_score_options_are_refused(exported: tuple[Path, Path], tmp_path: Path, change: dict, message: str) -> None:
    import lightembed

    folder = _copy(exported[1], tmp_path)
    path = folder / "1_LogitScore" / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps({**config, **change}), encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        lightembed.CrossEncoder(str(folder), device="cpu", verify=False)


def test_chat_template_without_pair_template_is_refused(exported: tuple[Path, Path], tmp_path: Path) -> None:
    import lightembed
    from lightembed.llm_reranker import PAIR_TEMPLATE_FILE

    folder = _copy(exported[1], tmp_path)
    (folder / PAIR_TEMPLATE_FILE).unlink()
    with pytest.raises(ValueError, match="'message' modality"):
        lightembed.CrossEncoder(str(folder), device="cpu", verify=False)


def test_a_template_that_transforms_the_texts_is_refused(st_model: Any) -> None:
    from lightembed_export import UnsupportedModelError
    from lightembed_export.llm_reranker import pair_template

    transformer = st_model[0]
    original = transformer.processor.chat_template
    try:
        transformer.processor.chat_template = original.replace(
            '| first).content }}<|im_end|>', '| first).content | trim }}<|im_end|>'
        )
        assert transformer.processor.chat_template != original
        with pytest.raises(UnsupportedModelError, match="verbatim"):
            pair_template(transformer)
    finally:
        transformer.processor.chat_template = original


def test_a_prompt_is_refused_when_the_template_takes_no_system_message() -> None:
    from lightembed.llm_reranker import PairTemplate

    template = PairTemplate(((("Q: ", False), ("query", True), (" D: ", False), ("document", True))), None,
                            "the chat template raised TemplateError for a system message", True)  # fmt: skip
    assert template.render("a {b}", "<c>") == "Q: a {b} D: <c>"
    with pytest.raises(ValueError, match="takes no system message.*TemplateError"):
        template.render("a", "b", "be strict")


def test_padding_is_left_whatever_tokenizer_config_says(exported: tuple[Path, Path], tmp_path: Path) -> None:
    """As sentence-transformers sets padding_side="left" on load for causal models, so does lightembed: a
    tokenizer_config.json saying "right" changes nothing."""
    import lightembed

    folder = _copy(exported[1], tmp_path)
    path = folder / "tokenizer_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps({**config, "padding_side": "right"}), encoding="utf-8")
    pairs = families.LLM_PAIRS
    right = lightembed.CrossEncoder(str(folder), device="cpu", verify=False)
    assert right.tokenizer_wrapper.padding_side == "left"
    expected = lightembed.CrossEncoder(str(exported[1]), device="cpu").predict(pairs, batch_size=4)
    np.testing.assert_allclose(right.predict(pairs, batch_size=4), expected, atol=1e-6)


def test_transformers_4_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """transformers 4.57 (the optimum stack) cannot trace these decoders: the exporter says so before loading."""
    import transformers
    from lightembed_export import UnsupportedModelError
    from lightembed_export.llm_reranker import check_stack

    check_stack("Qwen3ForCausalLM")  # this stack: transformers 5
    monkeypatch.setattr(transformers, "__version__", "4.57.6")
    with pytest.raises(UnsupportedModelError, match="needs transformers >= 5.*4.57.6") as refused:
        check_stack("Qwen3ForCausalLM")
    assert refused.value.architecture == "Qwen3ForCausalLM"


@pytest.mark.parametrize("edit", ["template", "kwargs"])
def test_a_chat_template_changed_after_export_is_refused(exported: tuple[Path, Path], tmp_path: Path, edit: str) -> None:
    """pair_template.json was rendered from one chat template with one set of chat_template processing_kwargs: a
    folder whose template or kwargs changed since is refused, not run the old way."""
    import lightembed

    folder = _copy(exported[1], tmp_path)
    if edit == "template":
        path = folder / "chat_template.jinja"
        path.write_text(path.read_text(encoding="utf-8").replace("<Query>: ", "Q: "), encoding="utf-8")
        message = "not the one lightembed-export rendered"
    else:
        path = folder / "sentence_bert_config.json"
        config = json.loads(path.read_text(encoding="utf-8"))
        config["processing_kwargs"] = {"chat_template": {"add_generation_prompt": True}}
        path.write_text(json.dumps(config), encoding="utf-8")
        message = "chat_template processing_kwargs"
    with pytest.raises(ValueError, match=message):
        lightembed.CrossEncoder(str(folder), device="cpu", verify=False)


def test_served_reranker_puts_its_default_prompt_where_sentence_transformers_does(tmp_path: Path) -> None:
    """`lightembed serve`'s /rerank on a chat-template reranker with a default prompt: the prompt is the system
    message, as in sentence-transformers' predict (not text in front of the query), so the scores are its scores."""
    import dataclasses

    import sentence_transformers
    import torch
    from lightembed_export import export_model

    from tests.test_server import KEY, Server, http

    family = dataclasses.replace(families.LLM_RERANKERS[0], prompts={"rerank": "Judge strictly: "},
                                 default_prompt_name="rerank")  # fmt: skip
    src = family.make(tmp_path / "st")
    export_model(src, tmp_path / "onnx", verbose=False, preoptimize=False)
    query, docs = "how do i reset my password?", [doc for _, doc in families.LLM_PAIRS[:6]]
    want = sentence_transformers.CrossEncoder(str(src), device="cpu").predict(
        [(query, d) for d in docs], activation_fn=torch.nn.Identity()
    )
    server = Server([f"{tmp_path / 'onnx'}=rr", "--api-key", KEY])
    try:
        status, _, got = http("POST", server.url + "/rerank", {"query": query, "texts": docs, "raw_scores": True}, KEY)
    finally:
        server.stop()
    assert status == 200, got
    assert {g["index"]: g["score"] for g in got} == pytest.approx(dict(enumerate(want.tolist())), abs=1e-5)
