"""Tiny models built at test time: a WordLevel tokenizer and an ONNX graph made with onnx.helper.

The graph is `last_hidden_state = (E[input_ids] + T[token_type_ids]) * attention_mask[..., None]`, so the
expected embeddings of any text can be computed in NumPy here, independently of lightembed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

WORDS = "the cat sat on mat a dog ran in park hello world query passage red blue green fast slow big small".split()
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
VOCAB = {tok: i for i, tok in enumerate(SPECIALS + WORDS)}
HIDDEN = 8


def weights(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        rng.standard_normal((len(VOCAB), HIDDEN)).astype(np.float32),
        rng.standard_normal((2, HIDDEN)).astype(np.float32),
    )


def write_tokenizer(folder: Path, fixed_padding: int | None = 16) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    tok = Tokenizer(models.WordLevel(VOCAB, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", VOCAB["[CLS]"]), ("[SEP]", VOCAB["[SEP]"])],
    )
    if fixed_padding:  # like all-MiniLM-L6-v2's file: the runtime must override this
        tok.enable_padding(pad_id=0, pad_token="[PAD]", length=fixed_padding)
        tok.enable_truncation(max_length=fixed_padding)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"pad_token": "[PAD]", "model_max_length": 512}))


def write_graph(path: Path, seed: int = 0, token_type_ids: bool = True, int32: bool = False) -> None:
    from onnx import TensorProto, helper, numpy_helper

    emb, types = weights(seed)
    itype = TensorProto.INT32 if int32 else TensorProto.INT64
    inputs = [
        helper.make_tensor_value_info("input_ids", itype, ["batch", "seq"]),
        helper.make_tensor_value_info("attention_mask", itype, ["batch", "seq"]),
    ]
    nodes = [helper.make_node("Gather", ["E", "input_ids"], ["word"])]
    summed = "word"
    inits = [numpy_helper.from_array(emb, "E"), numpy_helper.from_array(np.array([-1], dtype=np.int64), "axes")]
    if token_type_ids:
        inputs.append(helper.make_tensor_value_info("token_type_ids", itype, ["batch", "seq"]))
        inits.append(numpy_helper.from_array(types, "T"))
        nodes += [
            helper.make_node("Gather", ["T", "token_type_ids"], ["typ"]),
            helper.make_node("Add", ["word", "typ"], ["summed"]),
        ]
        summed = "summed"
    nodes += [
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "axes"], ["mask3"]),
        helper.make_node("Mul", [summed, "mask3"], ["last_hidden_state"]),
    ]
    out = helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "seq", HIDDEN])
    save_graph(path, "tiny", nodes, inputs, [out], inits)


def save_graph(path: Path, name: str, nodes: list, inputs: list, outputs: list, inits: list) -> None:
    """Check and write a tiny opset-17 ONNX graph built with onnx.helper."""
    import onnx
    from onnx import helper

    model = helper.make_model(
        helper.make_graph(nodes, name, inputs, outputs, initializer=inits),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def make_model(
    folder: Path,
    *,
    pooling: dict | None = None,
    normalize: bool = True,
    dense: tuple[np.ndarray, np.ndarray | None, str] | None = None,
    prompts: dict | None = None,
    default_prompt_name: str | None = None,
    max_seq_length: int = 12,
    do_lower_case: bool = False,
    onnx_path: str = "onnx/model.onnx",
    token_type_ids: bool = True,
    int32: bool = False,
    modules_json: bool = True,
    similarity_fn_name: str | None = None,
) -> Path:
    """Write a complete sentence-transformers-layout model folder and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    write_tokenizer(folder)
    write_graph(folder / onnx_path, token_type_ids=token_type_ids, int32=int32)
    (folder / "config.json").write_text(json.dumps({"hidden_size": HIDDEN, "max_position_embeddings": 64}))
    if not modules_json:
        return folder
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps(pooling or {"word_embedding_dimension": HIDDEN, "pooling_mode_mean_tokens": True})
    )
    modules.append({"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"})
    if dense is not None:
        from tests.safetensors_write import save_safetensors

        weight, bias, act = dense
        d = folder / "2_Dense"
        d.mkdir(exist_ok=True)
        tensors = {"linear.weight": weight}
        if bias is not None:
            tensors["linear.bias"] = bias
        save_safetensors(tensors, d / "model.safetensors")
        (d / "config.json").write_text(
            json.dumps(
                {
                    "in_features": weight.shape[1],
                    "out_features": weight.shape[0],
                    "bias": bias is not None,
                    "activation_function": act,
                }
            )
        )
        modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    if normalize:
        modules.append(
            {"idx": len(modules), "name": "n", "path": "9_Normalize", "type": "sentence_transformers.models.Normalize"}
        )
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_seq_length, "do_lower_case": do_lower_case})
    )
    st_config: dict = {"prompts": prompts or {}, "default_prompt_name": default_prompt_name}
    if similarity_fn_name:
        st_config["similarity_fn_name"] = similarity_fn_name
    (folder / "config_sentence_transformers.json").write_text(json.dumps(st_config))
    return folder


def token_ids(text: str, max_seq_length: int = 12, lower: bool = False) -> list[int]:
    """What the tiny tokenizer gives for a text: [CLS] words [SEP], truncated."""
    words = (text.lower() if lower else text).split()
    ids = [VOCAB["[CLS]"]] + [VOCAB.get(w, VOCAB["[UNK]"]) for w in words]
    ids = ids[: max_seq_length - 1] + [VOCAB["[SEP]"]]
    return ids


def token_embeddings(text: str, max_seq_length: int = 12, lower: bool = False) -> np.ndarray:
    """The tiny graph's output for one unpadded text: (tokens, HIDDEN)."""
    emb, types = weights()
    return emb[token_ids(text, max_seq_length, lower)] + types[0]


def poison_weights(folder: Path, onnx_path: str = "onnx/model.onnx") -> None:
    """Damage the tiny graph's word table to NaN in place (weights that still parse, giving NaN vectors)."""
    from onnx import load, numpy_helper, save

    path = folder / onnx_path
    graph = load(str(path))
    for i, init in enumerate(graph.graph.initializer):
        if init.name == "E":
            table = numpy_helper.to_array(init).copy()
            table[:] = np.nan
            graph.graph.initializer[i].CopyFrom(numpy_helper.from_array(table, "E"))
    save(graph, str(path))
