"""Causal-LM rerankers (Qwen3-Reranker, bge-reranker-v2-gemma, mxbai-rerank-v2): a sentence-transformers 6
CrossEncoder of a Transformer (text-generation) and a LogitScore module, exported as one graph.

The graph (`onnx/model.onnx`) takes input_ids, attention_mask and position_ids and runs the causal LM without a KV
cache (one prefill), keeps the logits of the last position only (transformers' logits_to_keep=1) and gathers the
LogitScore tokens' columns there: (batch, 1 or 2) logits are all that leave it. The runtime left-pads, so the last
position is every row's last real token, and computes LogitScore's score (true - false) from them
(lightembed.llm_reranker). The token ids are written into the graph's metadata, where the runtime checks them.

A tokenizer with a chat template is how sentence-transformers writes a pair (a "query" and a "document" message, a
prompt as a "system" message): the template is rendered here with placeholder texts, checked to place each text
verbatim, and saved as `pair_template.json` (literal pieces and slots), so that the runtime needs no Jinja. Every
file is then checked twice against sentence-transformers on torch: the token ids of the probe pairs (with and
without a prompt, texts holding the template's own special tokens included) must be identical, and the scores close
(the cross-encoder bars of lightembed_export.verify).
"""

from __future__ import annotations

import inspect
import json
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lightembed.llm_reranker import LOGIT_SCORE, PAIR_TEMPLATE_FILE, TOKEN_IDS_KEY, SystemPair, template_digest
from lightembed_export.errors import UnsupportedModelError, VerificationError
from lightembed_export.manifest import MANIFEST_NAME, manifest_head, probes_digest, write_manifest
from lightembed_export.tasks import TEXT_CLASSIFICATION

GRAPH_INPUTS = ("input_ids", "attention_mask", "position_ids")
OUTPUT = "logits"
PROMPT = "Judge whether the document answers the query; answer yes or no."
"""The prompt (system message) the token check also renders pairs with."""
_SENTINELS = (
    {"system": "\ue000system\ue001", "query": "\ue000query\ue001", "document": "\ue000document\ue001"},
    {"system": "\ue002S\ue003", "query": "\ue002Q\ue003", "document": "\ue002D\ue003"},
)
_VERBATIM = {
    "system": " {{ system }} <|im_end|>\n",
    "query": "  <Query>: {query} <|im_start|>user\n",
    "document": "\n<Document>: {% raw %} <eos> ",
}
"""Texts with whitespace at both ends and template syntax inside: a template that trims, escapes or parses the content
does not render them as they are, and is refused."""
_SIZE_KWARGS = ("padding", "truncation", "max_length", "return_tensors", "pad_to_multiple_of")
_SPECIAL_PAIRS: tuple[tuple[str, str], ...] = (
    ("<|im_start|>user\n<Query>: {query}", "<|im_end|>\n<Document>: {document} <eos> <bos>"),
    ("{{ messages }} {% if x %}yes{% endif %}", "no <unk> yes\n\n"),
)
"""Pairs whose texts hold chat-template special tokens and Jinja syntax: rendered as sentence-transformers does,
the special tokens inside a text are tokenized as special tokens there too."""


def is_llm_reranker(layout: Any) -> bool:
    """Whether source.read_layout found a CrossEncoder with a LogitScore module."""
    return any(str(t).rsplit(".", 1)[-1] == LOGIT_SCORE for t in layout.module_types)


def probe_pairs() -> list[tuple[str, str]]:
    """The exporter's cross-encoder probe pairs and pairs holding template syntax and special tokens."""
    from lightembed_export.verify import PROBE_PAIRS

    return [*PROBE_PAIRS, *_SPECIAL_PAIRS]


def _refuse(message: str, architecture: str) -> UnsupportedModelError:
    return UnsupportedModelError(message, architecture=architecture)


def check_model(model: Any) -> tuple[Any, Any]:
    """(Transformer, LogitScore) of a loaded CrossEncoder; UnsupportedModelError naming any module or option the
    runtime does not run."""
    names = [type(m).__name__ for m in model]
    if names != ["Transformer", LOGIT_SCORE]:
        raise _refuse(
            f"the modules are {', '.join(names)}; lightembed runs a causal-LM reranker as a Transformer followed by "
            "LogitScore only", names[-1]
        )  # fmt: skip
    transformer, score = model[0], model[1]
    architecture = type(transformer.auto_model).__name__
    if transformer.transformer_task != "text-generation":
        raise _refuse(f"the Transformer's task is {transformer.transformer_task!r}; LogitScore needs "
                      "'text-generation'", architecture)  # fmt: skip
    if score.module_input_name != "causal_logits":
        raise _refuse(f"LogitScore reads {score.module_input_name!r}; lightembed's graph gives 'causal_logits'",
                      LOGIT_SCORE)  # fmt: skip
    unknown = sorted(set(transformer.processing_kwargs) - {"chat_template"})
    if unknown:
        raise _refuse(f"the Transformer's processing_kwargs {unknown} are not run by lightembed (only the "
                      "chat_template ones, rendered at export)", architecture)  # fmt: skip
    chat = transformer.processing_kwargs.get("chat_template", {})
    refused = sorted(k for k in chat if k in _SIZE_KWARGS or (k == "sanitize_control_tokens" and chat[k]))
    if refused:
        raise _refuse(f"the chat_template processing_kwargs {refused} change tokenization in ways lightembed does "
                      "not reproduce", architecture)  # fmt: skip
    for option in ("query_expansion", "query_length", "document_length"):
        if getattr(transformer, option, None) is not None:
            raise _refuse(f"the Transformer's {option} is set; a reranker's pairs are cut at max_seq_length only",
                          architecture)  # fmt: skip
    extra = sorted(set(transformer.modality_config) - {"text", "message"})
    if extra:
        raise _refuse(f"the Transformer takes {extra}; lightembed's rerankers take text only", architecture)
    return transformer, score


def check_stack(architecture: str) -> None:
    """UnsupportedModelError unless transformers >= 5 runs here: on 4.57 (the optimum stack) torch.onnx.export
    cannot trace the causal LM (RuntimeError: unordered_map::at), and its tokenizers read transformers 5 folders
    badly."""
    import transformers
    from packaging.version import Version

    if Version(transformers.__version__) < Version("5"):
        raise _refuse(
            f"exporting a causal-LM reranker needs transformers >= 5 (with sentence-transformers >= 6); this is "
            f"transformers {transformers.__version__}", architecture
        )  # fmt: skip


def _render(transformer: Any, texts: dict[str, str], system: bool) -> str:
    """The conversation sentence-transformers renders for the pair (texts["query"], texts["document"]), with
    texts["system"] as the system message when `system`."""
    formatter = transformer.input_formatter
    messages = formatter.pair_to_messages([texts["query"], texts["document"]])
    if system:
        messages = formatter.prepend_prompt_to_messages([messages], texts["system"])[0]
    kwargs = {k: v for k, v in transformer.processing_kwargs.get("chat_template", {}).items() if k != "restore_suffix"}
    return str(transformer.processor.apply_chat_template(messages, tokenize=False, **kwargs))


def _split(text: str, sentinels: dict[str, str]) -> list[dict[str, str]]:
    slot_of = {value: slot for slot, value in sentinels.items()}
    pattern = re.compile("|".join(re.escape(value) for value in sentinels.values()))
    pieces: list[dict[str, str]] = []
    position = 0
    for match in pattern.finditer(text):
        if match.start() > position:
            pieces.append({"text": text[position : match.start()]})
        pieces.append({"slot": slot_of[match.group()]})
        position = match.end()
    if position < len(text):
        pieces.append({"text": text[position:]})
    return pieces


def _join(pieces: list[dict[str, str]], texts: dict[str, str]) -> str:
    return "".join(texts[p["slot"]] if "slot" in p else p["text"] for p in pieces)


def template_variant(transformer: Any, system: bool) -> list[dict[str, str]]:
    """The template rendered for a pair (with a system message when `system`) as pieces; UnsupportedModelError
    unless every text lands in it verbatim (renders with other texts must be the same pieces joined)."""
    architecture = type(transformer.auto_model).__name__
    pieces = _split(_render(transformer, _SENTINELS[0], system), _SENTINELS[0])
    slots = [p["slot"] for p in pieces if "slot" in p]
    if "query" not in slots or "document" not in slots:
        raise _refuse("the chat template does not render both the query and the document of a pair", architecture)
    for texts in (_SENTINELS[1], _VERBATIM):
        if _render(transformer, texts, system) != _join(pieces, texts):
            raise _refuse(
                "the chat template does not place the query, document and system texts verbatim (it trims, escapes "
                "or branches on them), so lightembed cannot write pairs without running it", architecture
            )  # fmt: skip
    return pieces


def pair_template(transformer: Any) -> dict[str, Any] | None:
    """pair_template.json's content for a Transformer that renders pairs with its chat template ("message" in its
    modality_config), else None (pairs go through the tokenizer's pair encoding)."""
    if "message" not in transformer.modality_config:
        return None
    template = transformer.processor.chat_template
    if not isinstance(template, str):
        raise _refuse("the tokenizer has several named chat templates; lightembed renders a single one",
                      type(transformer.auto_model).__name__)  # fmt: skip
    chat_kwargs = transformer.processing_kwargs.get("chat_template", {})
    data: dict[str, Any] = {
        "written_by": "lightembed-export: the chat template rendered for a query/document pair",
        "plain": template_variant(transformer, system=False),
        "with_system": None,
        "restore_suffix": bool(chat_kwargs.get("restore_suffix", True)),
        "chat_template_sha256": template_digest(template),
        "chat_template_kwargs": chat_kwargs,
    }
    try:
        data["with_system"] = template_variant(transformer, system=True)
    except UnsupportedModelError as exc:
        data["system_refused"] = str(exc)
    except Exception as exc:  # the template raises for a system message (raise_exception): prompts are refused
        data["system_refused"] = f"the chat template raised {type(exc).__name__} for a system message: {exc}"
    return data


def export_graph(saved: Path, path: Path, token_ids: Sequence[int], opset: int | None = None) -> Path:
    """torch.onnx.export of the causal LM in `saved` to `path`: the LogitScore tokens' logits at the last position,
    (batch, len(token_ids)), without a KV cache."""
    import torch

    from lightembed_export import torch_export

    model = torch_export.load_model(saved, TEXT_CLASSIFICATION, "AutoModelForCausalLM")
    if "logits_to_keep" not in inspect.signature(model.forward).parameters:
        architecture = type(model).__name__
        raise _refuse(f"{architecture}.forward takes no logits_to_keep (transformers too old?)", architecture)

    class LastTokenLogits(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner
            self.register_buffer("index", torch.tensor(list(token_ids), dtype=torch.int64))

        def forward(self, input_ids: Any, attention_mask: Any, position_ids: Any) -> Any:
            out = self.inner(
                input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False,
                logits_to_keep=1, return_dict=True,
            )  # fmt: skip
            return out.logits[:, -1, :].index_select(-1, self.index)

    axes = {0: "batch_size", 1: "sequence_length"}
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), torch_export._masks_without_vmap():
        torch.onnx.export(
            LastTokenLogits(model).eval(), torch_export.dummy_inputs(model, GRAPH_INPUTS), str(path),
            input_names=list(GRAPH_INPUTS), output_names=[OUTPUT],
            dynamic_axes={**{name: axes for name in GRAPH_INPUTS}, OUTPUT: {0: "batch_size"}},
            opset_version=opset or torch_export.DEFAULT_OPSET, do_constant_folding=True, dynamo=False,
        )  # fmt: skip
    return path


def token_mismatch(model: Any, output: Path, file_name: str, pairs: Sequence[tuple[str, str]]) -> str | None:
    """Why lightembed's tokens of `pairs` (alone and with PROMPT) differ from sentence-transformers', or None."""
    from lightembed import CrossEncoder

    ours = CrossEncoder(str(output), device="cpu", file_name=file_name)
    transformer = model[0]
    for prompt in (None, PROMPT):
        if prompt is not None and ours._causal is not None and ours._causal.template is not None:
            if ours._causal.template.with_system is None:
                continue  # prompts are refused for this template, with its reason
        expected = transformer.preprocess([list(p) for p in pairs], prompt=prompt)
        items: list[Any] = [SystemPair(prompt, *p) for p in pairs] if prompt else list(pairs)
        batch = ours.pad(ours.tokenize_inputs(items))
        mask = expected["attention_mask"].numpy()
        ids = expected["input_ids"].numpy()
        if mask.shape != batch.attention_mask.shape or not np.array_equal(mask, batch.attention_mask):
            return f"the token counts of the pairs differ from sentence-transformers' (prompt={prompt!r})"
        rows = np.nonzero((ids != batch.input_ids) & (mask == 1))[0]
        if rows.size:
            return f"the tokens of pair {int(rows[0])} differ from sentence-transformers' (prompt={prompt!r})"
    return None


def export_llm_reranker(
    source: Any,
    layout: Any,
    output: Path,
    levels: list[str],
    targets: list[Any],
    opset: int | None,
    overwrite: bool,
    external_data: bool,
    say: Callable[[str], None],
    per_channel: bool = True,
    preoptimize: bool = True,
) -> dict[str, Any]:
    """export_model() for a LogitScore CrossEncoder: fp32, each level in `levels` and each int8 target, verified;
    returns the manifest written to `output`/lightembed.json. VerificationError (after writing) if a file misses its
    bar."""
    from lightembed_export import api
    from lightembed_export import optimize as optimizing
    from lightembed_export import quantize as quantizing
    from lightembed_export._quiet import quiet
    from lightembed_export.layout import check_module_types, copy_layout, load_model, save_model
    from lightembed_export.verify import format_table, reference_logits

    check_module_types(source.path)  # an older sentence-transformers without LogitScore: refused here, naming it
    check_stack(layout.architecture)
    if levels:
        optimizing.check_optimizable(layout.model_type, layout.architecture)
    static = [t.name for t in targets if t.name == quantizing.STATIC]
    if static:
        raise _refuse("static int8 calibrates on plain pairs, not on the reranker's chat template; use a dynamic "
                      "int8 target (avx2, avx512_vnni, arm64, ...)", layout.architecture)  # fmt: skip
    clock = api._Clock()
    pairs = probe_pairs()
    with quiet(), tempfile.TemporaryDirectory(prefix="lightembed-export-") as work:
        model = load_model(source.path, TEXT_CLASSIFICATION)
        transformer, score = check_model(model)
        token_ids = [score.true_token_id] + ([] if score.false_token_id is None else [score.false_token_id])
        say(f"load: CrossEncoder(Transformer, LogitScore {token_ids}) with sentence-transformers on torch{clock.lap()}")
        template = pair_template(transformer)
        saved = Path(work) / "model"
        save_model(model, saved)
        reference = reference_logits(model, pairs)
        say(f"reference: sentence-transformers scores of {len(pairs)} probe pairs{clock.lap()}")
        created = api._prepare_output(output, overwrite)
        try:
            copied = copy_layout(saved, output, source.path)
            if template is not None:
                (output / PAIR_TEMPLATE_FILE).write_text(json.dumps(template, indent=2, ensure_ascii=False) + "\n",
                                                         encoding="utf-8")  # fmt: skip
                copied.append(PAIR_TEMPLATE_FILE)
            how = "chat template pre-rendered" if template is not None else "the tokenizer's pair encoding"
            say(f"layout: {len(copied)} files, no torch weights; pairs: {how}{clock.lap()}")
            fp32 = export_graph(saved, output / "onnx" / "model.onnx", token_ids, opset)
            entries: list[dict[str, Any]] = [{"file": fp32, "kind": "fp32"}]
            say(f"export: onnx/model.onnx (torch.onnx.export, last-token logits of {token_ids}){clock.lap()}")
            for level in levels:
                done = optimizing.optimize_file(fp32, level, saved)
                entries.append({"file": done.path, "kind": "optimized", "optimization": done.config})
                say(f"optimize {level}: {api._rel(done.path, output)}{clock.lap()}")
            for target in targets:
                if target.name == quantizing.ROWWISE:
                    done_q = quantizing.quantize_rowwise_file(fp32)
                elif target.name == quantizing.WEIGHTS:
                    done_q = quantizing.quantize_weights_file(fp32)
                else:
                    done_q = quantizing.quantize_file(fp32, target.name, saved, per_channel=per_channel)
                config = dict(done_q.config, requested_as=list(target.requested_as))
                entries.append({"file": done_q.path, "kind": "quantized", "quantization": config})
                say(f"quantize {target.name}: {api._rel(done_q.path, output)}{clock.lap()}")
            files = _describe(entries, output, token_ids, external_data)
            _verify(files, model, output, pairs, reference)
            say(f"verify: {len(files)} file(s) on {len(pairs)} pairs: tokens and scores against "
                f"sentence-transformers{clock.lap()}")  # fmt: skip
        except BaseException:
            api._discard_output(output, created)
            raise
    manifest = _manifest(source, layout, model, files, pairs, token_ids, template is not None)
    write_manifest(output, manifest)
    if preoptimize:
        manifest = api.write_preoptimized(output, say, clock)
    say(format_table(files, TEXT_CLASSIFICATION))
    say(f"wrote {output} ({MANIFEST_NAME}) in {clock.total():.1f} s")
    failed = [f for f in files if not f["passed"]]
    if failed:
        details = "; ".join(api._failure(f) for f in failed)
        raise VerificationError(f"verification failed for {len(failed)} file(s): {details}", [f["path"] for f in failed])
    return manifest


def _describe(
    entries: list[dict[str, Any]], output: Path, token_ids: list[int], external_data: bool
) -> list[dict[str, Any]]:
    """Manifest entries: each file with the LogitScore token ids in its metadata, loadable by older onnxruntime,
    hashed, with the bar it will be held to."""
    import onnx

    from lightembed_export.onnx_files import make_model_loadable, onnx_file_info, save_model_file
    from lightembed_export.verify import threshold_for

    files = []
    for entry in entries:
        path: Path = entry["file"]
        model = onnx.load(str(path), load_external_data=False)
        props = {p.key: p.value for p in model.metadata_props}
        props[TOKEN_IDS_KEY] = json.dumps(token_ids)
        onnx.helper.set_model_props(model, props)
        changes = make_model_loadable(model)
        save_model_file(model, path, external_data)
        info = onnx_file_info(path, output, model)
        level = (entry.get("optimization") or {}).get("level")
        info.update(
            kind=entry["kind"], pooled_output=None, optimization=entry.get("optimization"),
            quantization=entry.get("quantization"),
            threshold=threshold_for(entry["kind"], level, TEXT_CLASSIFICATION).as_dict(),
        )  # fmt: skip
        if changes:
            info["rewritten_for_older_onnxruntime"] = changes
        files.append(info)
    return files


def _verify(
    files: list[dict[str, Any]], model: Any, output: Path, pairs: list[tuple[str, str]], reference: np.ndarray
) -> None:
    """Each file's metrics, passed and error: its tokens (the same for every file: checked once, with the first)
    and its scores against sentence-transformers'."""
    from lightembed_export.verify import Threshold, compare_logits, runtime_logits

    tokens = None
    for info in files:
        try:
            if tokens is None:
                tokens = token_mismatch(model, output, info["path"], pairs) or ""
            metrics = compare_logits(reference, runtime_logits(output, info["path"], pairs))
        except Exception as exc:  # the runtime rejecting a file is a verification failure, reported per file
            info.update(metrics=None, passed=False, error=f"{type(exc).__name__}: {exc}")
            continue
        bar = Threshold.from_dict(info["threshold"])
        info.update(metrics=metrics, passed=not tokens and bar.passes(metrics[bar.metric]), error=tokens or None)


def _manifest(
    source: Any, layout: Any, model: Any, files: list[dict[str, Any]], pairs: list[tuple[str, str]],
    token_ids: list[int], templated: bool,
) -> dict[str, Any]:  # fmt: skip
    from lightembed_export.api import _dotted_name
    from lightembed_export.verify import BATCH_SIZE

    config = model[0].auto_model.config
    return {
        **manifest_head(source),
        "model": {
            "task": TEXT_CLASSIFICATION,
            "task_reason": "a sentence-transformers CrossEncoder with a LogitScore module (causal-LM reranker)",
            "class": "CrossEncoder",
            "architecture": layout.architecture,
            "model_type": layout.model_type,
            "modules": [type(m).__name__ for m in model],
            "num_labels": 1,
            "logit_score": {
                "token_ids": token_ids,
                "score": "logit[true] - logit[false]" if len(token_ids) == 2 else "logit[true]",
                "graph_output": f"{OUTPUT}: the last position's logits of token_ids (no KV cache, left padding)",
            },
            "pairs": f"chat template ({PAIR_TEMPLATE_FILE})" if templated else "the tokenizer's pair encoding",
            "activation_fn": _dotted_name(model.activation_fn) if model.activation_fn is not None else None,
            "max_seq_length": getattr(model, "max_seq_length", None),
            "hidden_size": getattr(config, "hidden_size", None),
        },
        "verification": {
            "reference": "sentence-transformers CrossEncoder on torch (cpu, float32)",
            "candidate": "lightembed.CrossEncoder(device='cpu', file_name=...)",
            "compared": "tokens of the probe pairs (with and without a prompt), then predict(activation_fn=Identity)",
            "probes": len(pairs),
            "probes_sha256": probes_digest(pairs),
            "batch_size": BATCH_SIZE,
            "passed": all(f["passed"] for f in files),
        },
        "files": files,
    }

