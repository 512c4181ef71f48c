"""What each route does, without the web framework: check the body, tokenize off the event loop, run the inputs
through the model's batcher, shape the answer. Routes: OpenAI embeddings, TEI's /embed, /rerank, /embed_sparse
and /info, Cohere/Jina /v1/rerank, /v1/models. Every failure is an `ApiError` (protocol.py)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from lightembed.server import protocol as p
from lightembed.server.batcher import Batcher
from lightembed.server.loading import KIND_CLASS, Kind
from lightembed.server.model import ServedModel


@dataclass
class Served:
    """One served model: its name, kind, the loaded model and its batcher."""

    name: str
    kind: Kind
    model: ServedModel
    batcher: Batcher
    source: str = ""


@dataclass
class Settings:
    """Server-wide options (each a `lightembed serve` flag)."""

    limits: p.Limits = field(default_factory=p.Limits)
    auto_truncate: bool = True
    request_timeout: float = 30.0
    body_timeout: float | None = 30.0
    default_model: str | None = None


def _bool_field(body: Mapping[str, Any], name: str, default: bool) -> bool:
    value = p.optional_field(body, name, (bool,), "true or false")
    return default if value is None else value


class Service:
    """The routes' logic over the served models."""

    def __init__(self, served: list[Served], settings: Settings, count_tokens: Callable[[str, int], None] | None = None):
        self.models = {s.name: s for s in served}
        self.settings = settings
        self._count_tokens = count_tokens
        self.created = int(time.time())

    # ----- shared steps -------------------------------------------------------------------------------------
    def _pick(self, body: Mapping[str, Any], route: str, kind: Kind) -> Served:
        models = {name: s.model for name, s in self.models.items()}
        fitting = {id(s.model) for s in self.models.values() if s.kind == kind}
        name = p.pick_model(body, models, route, lambda model: id(model) in fitting, KIND_CLASS[kind],
                            self.settings.default_model)
        return self.models[name]

    async def _tokenize(self, served: Served, items: list[Any], truncate: bool, field_name: str) -> list[Any]:
        loop = asyncio.get_running_loop()
        try:
            encodings = await loop.run_in_executor(None, served.model.tokenize_inputs, items)
        except (TypeError, ValueError) as exc:
            raise p.InvalidField(None, str(exc).replace("inputs[", f"{field_name}["), param=field_name) from None
        if not truncate:
            for i, enc in enumerate(encodings):
                if enc.overflowing:
                    raise p.PayloadTooLarge(
                        None,
                        f"`{field_name}[{i}]` is longer than the model's {served.model.max_seq_length} tokens and "
                        "`truncate` is false; send `truncate: true` or a shorter input.",
                        param=field_name,
                    )
        if self._count_tokens is not None:
            self._count_tokens(served.name, p.count_tokens(encodings))
        return encodings

    def _truncate(self, body: Mapping[str, Any]) -> bool:
        truncate = _bool_field(body, "truncate", self.settings.auto_truncate)
        direction = p.optional_field(body, "truncation_direction", (str,), '"Right"')
        if direction not in (None, "Right", "right"):
            raise p.BadRequest(
                None, f"`truncation_direction` {direction!r} is not supported: inputs are cut on the right.",
                param="truncation_direction",
            )
        return truncate

    async def _embed_rows(self, served: Served, texts: list[str], prompt_name: str | None, truncate: bool) -> tuple[np.ndarray, int]:
        texts, prompt_length = p.with_prompt(served.model, texts, prompt_name)
        encodings = await self._tokenize(served, texts, truncate, "input")
        rows = await served.batcher.submit(encodings, key=("embed", prompt_length), prompt_length=prompt_length)
        vectors = np.stack(rows).astype(np.float32, copy=False)
        p.check_finite(vectors, served.name)
        return vectors, p.count_tokens(encodings)

    # ----- OpenAI -------------------------------------------------------------------------------------------
    async def openai_embeddings(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST /v1/embeddings."""
        models = {n: s.model for n, s in self.models.items() if s.kind == "embed"}
        others = {n: s.model for n, s in self.models.items() if s.kind != "embed"}
        request = p.parse_embeddings_request(body, {**models, **others}, self.settings.limits,
                                             self.settings.default_model)
        vectors, tokens = await self._embed_rows(self.models[request.model], request.texts, None, True)
        return p.embeddings_response(request, p.finish_embeddings(vectors, request.dimensions), tokens)

    def openai_models(self) -> dict[str, Any]:
        """GET /v1/models."""
        return {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": self.created, "owned_by": "lightembed", "kind": s.kind}
                for name, s in self.models.items()
            ],
        }

    # ----- TEI ----------------------------------------------------------------------------------------------
    async def tei_embed(self, body: Mapping[str, Any]) -> list[list[float]]:
        """POST /embed: `inputs`, `normalize` (default true), `truncate`, `prompt_name`, `dimensions`."""
        served = self._pick(body, "/embed", "embed")
        texts, _ = p.texts_field(body, "inputs", self.settings.limits)
        normalize = _bool_field(body, "normalize", True)
        truncate = self._truncate(body)
        prompt_name = p.optional_field(body, "prompt_name", (str,), "a string")
        dimensions = p.positive_int_field(body, "dimensions")
        vectors, _ = await self._embed_rows(served, texts, prompt_name, truncate)
        return p.finish_embeddings(vectors, dimensions, normalize).tolist()

    async def tei_embed_sparse(self, body: Mapping[str, Any]) -> list[list[dict[str, Any]]]:
        """POST /embed_sparse: `inputs`, `truncate`, `prompt_name`; [{"index": token id, "value": weight}] per input."""
        served = self._pick(body, "/embed_sparse", "sparse")
        texts, _ = p.texts_field(body, "inputs", self.settings.limits)
        truncate = self._truncate(body)
        prompt_name = p.optional_field(body, "prompt_name", (str,), "a string")
        texts, _ = p.with_prompt(served.model, texts, prompt_name)
        encodings = await self._tokenize(served, texts, truncate, "inputs")
        k = served.model.max_active_dims
        rows = await served.batcher.submit(encodings, key=("sparse", k), max_active_dims=k)
        p.check_finite([row.values for row in rows], served.name, "inputs")
        return [
            [{"index": int(i), "value": float(v)} for i, v in zip(row.indices, row.values)] for row in rows
        ]

    async def _rerank_scores(self, served: Served, query: str, docs: list[str], raw: bool, truncate: bool) -> tuple[np.ndarray, int]:
        model = served.model
        if model.num_labels != 1:
            raise p.BadRequest(
                None, f"The model {served.name!r} has {model.num_labels} labels; reranking needs a one-label model.",
                param="model",
            )
        prompt = p.with_prompt(model, [query])[0][0]
        encodings = await self._tokenize(served, [(prompt, d) for d in docs], truncate, "texts")
        options: dict[str, Any] = {}
        if raw:
            from lightembed.activations import Identity

            options["activation_fn"] = Identity()
        rows = await served.batcher.submit(encodings, key=("rerank", raw), **options)
        scores = np.array([float(r[0]) for r in rows], dtype=np.float32)
        p.check_finite(scores[:, None], served.name, "texts")
        return scores, p.count_tokens(encodings)

    async def tei_rerank(self, body: Mapping[str, Any]) -> list[dict[str, Any]]:
        """POST /rerank: `query`, `texts`, `raw_scores`, `return_text`, `truncate`; best first."""
        served = self._pick(body, "/rerank", "rerank")
        query = _text(body, "query", self.settings.limits)
        texts, _ = p.texts_field(body, "texts", self.settings.limits)
        raw = _bool_field(body, "raw_scores", False)
        return_text = _bool_field(body, "return_text", False)
        scores, _ = await self._rerank_scores(served, query, texts, raw, self._truncate(body))
        out = []
        for i in np.argsort(-scores, kind="stable"):
            entry: dict[str, Any] = {"index": int(i), "score": float(scores[i])}
            if return_text:
                entry["text"] = texts[i]
            out.append(entry)
        return out

    def tei_info(self) -> dict[str, Any]:
        """GET /info: TEI's fields for the first served model, and every served model under "models"."""
        first = next(iter(self.models.values()))
        return {**self._info(first), "models": [self._info(s) for s in self.models.values()]}

    def _info(self, served: Served) -> dict[str, Any]:
        model = served.model
        if served.kind == "rerank":
            labels = model.config.get("id2label") or {str(i): f"LABEL_{i}" for i in range(model.num_labels)}
            model_type: dict[str, Any] = {"reranker": {"id2label": labels, "label2id": {v: int(k) for k, v in labels.items()}}}
        elif served.kind == "sparse":
            model_type = {"embedding": {"pooling": "splade"}}
        else:
            model_type = {"embedding": {"pooling": "+".join(model.config.pooling.modes)}}
        from lightembed import __version__

        batcher = served.batcher
        return {
            "model_id": served.name,
            "model_sha": None,
            "model_dtype": "float32",
            "model_type": model_type,
            "class": KIND_CLASS[served.kind],
            "max_concurrent_requests": batcher.max_queue,
            "max_input_length": model.max_seq_length,
            "max_batch_tokens": batcher.max_tokens,
            "max_batch_requests": batcher.max_items,
            "max_client_batch_size": self.settings.limits.max_inputs,
            "auto_truncate": self.settings.auto_truncate,
            "tokenization_workers": None,
            "version": __version__,
            "router": "lightembed",
        }

    # ----- Cohere / Jina ------------------------------------------------------------------------------------
    async def cohere_rerank(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST /v1/rerank: `query`, `documents` (strings or {"text": ...}), `top_n`, `return_documents`."""
        served = self._pick(body, "/v1/rerank", "rerank")
        query = _text(body, "query", self.settings.limits)
        docs = body.get("documents")
        if not isinstance(docs, list):
            raise p.InvalidField(
                None, f"`documents` must be a list of strings or of {{\"text\": ...}} objects, got {p.kind_of(docs)}.",
                param="documents",
            )
        docs = [d.get("text") if isinstance(d, dict) else d for d in docs]
        texts, _ = p.texts_field({"documents": docs}, "documents", self.settings.limits)
        top_n = p.optional_field(body, "top_n", (int,), "a non-negative integer")
        if top_n is not None and top_n < 0:
            raise p.InvalidField(None, f"`top_n` must be a non-negative integer, got {top_n}.", param="top_n")
        return_documents = _bool_field(body, "return_documents", False)
        scores, tokens = await self._rerank_scores(served, query, texts, False, True)
        results = []
        for i in np.argsort(-scores, kind="stable")[: top_n if top_n is not None else len(texts)]:
            entry: dict[str, Any] = {"index": int(i), "relevance_score": float(scores[i])}
            if return_documents:
                entry["document"] = {"text": texts[i]}
            results.append(entry)
        return {
            "id": f"rerank-{time.time_ns()}",
            "model": served.name,
            "results": results,
            "usage": {"total_tokens": tokens},
            "meta": {"billed_units": {"search_units": 1}},
        }


def _text(body: Mapping[str, Any], name: str, limits: p.Limits) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise p.InvalidField(None, f"`{name}` is required: a string.", param=name)
    if len(value) > limits.max_chars:
        raise p.PayloadTooLarge(
            None, f"`{name}` has {len(value)} characters; this server takes at most {limits.max_chars}.", param=name
        )
    return value
