"""What each route does, without the web framework: check the body, tokenize off the event loop, run the inputs
through the model's batcher, shape the answer. Routes: OpenAI embeddings and /v1/models; TEI's /embed, /embed_all,
/embed_sparse, /similarity, /rerank, /predict, /tokenize, /decode and /info; Cohere/Jina /v1/rerank, Cohere's
/v2/rerank and /v2/embed and Jina's /v1/multi-vector (lightembed/server/openapi.py lists them with their fields). Every failure is an `ApiError`
(protocol.py); a non-finite model output is one too (NonFinite), never a vector."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, cast

import numpy as np

from lightembed.errors import LightembedValueError
from lightembed.server import protocol as p
from lightembed.server import timing
from lightembed.server.batcher import Batcher
from lightembed.server.loading import KIND_CLASS, Kind
from lightembed.server.model import EmbeddingModel, MultiVectorModel, RerankModel, ServedModel, SparseModel


INLINE_CHARACTERS = 2048
"""Requests with at most this many characters in all are tokenized on the event loop (about 0.1 ms)."""


def _parts(item: Any) -> tuple[Any, ...]:
    """The texts of one input: itself, or each text of a pair."""
    return tuple(item) if isinstance(item, (tuple, list)) else (item,)


def _characters(items: list[Any]) -> int:
    """Characters in `items` (texts or pairs of texts); anything else counts as large."""
    return sum(len(part) if isinstance(part, str) else INLINE_CHARACTERS + 1 for item in items for part in _parts(item))


def least_tokens(items: list[Any], max_seq_length: int | None, added: int = 0) -> float:
    """A lower bound on the tokens of `items` (texts or pairs of texts), read from the text without tokenizing:
    each whitespace-separated word is at least one token (WordPiece, BPE and Unigram alike, [UNK] at worst), every
    input gets the `added` tokens an empty one has (special tokens, a template), and an input is at most
    `max_seq_length` tokens (truncated, or refused when it is longer). A word made only of
    characters a tokenizer's normalizer deletes (zero-width and control characters) would count without being a
    token; such a request may meet a 429 under load that its true size would have escaped, never a wrong answer.
    Anything but text counts one token."""
    cap = max_seq_length or 1
    total = 0
    for item in items:
        words = sum(len(part.split()) if isinstance(part, str) else 1 for part in _parts(item))
        total += min(cap, max(1, words + added))
    return float(total)


@dataclass
class Served:
    """One served model: its name, kind, the loaded model and its batcher."""

    name: str
    kind: Kind
    model: ServedModel
    batcher: Batcher
    source: str = ""
    # Large requests tokenize here, one at a time: in the shared default pool several of them at once took the
    # cores from inference and made the small requests queued behind them wait seconds.
    tokenizer_thread: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="lightembed-tokenize")
    )
    _added: dict[Any, int] = field(default_factory=dict, init=False, repr=False)  # added_tokens, by input shape
    faces: tuple["Served", ...] = ()
    """The same model file served as another kind under the same name (BGE-M3: embed and sparse)."""

    def added_tokens(self, item: Any) -> int:
        """Tokens the model's tokenizer gives an empty input shaped like `item` (a text or a pair of texts): the
        special tokens, or a reranker's template, which every input of that shape has whatever its text."""
        if isinstance(item, str):
            shape: Any = str
        elif isinstance(item, tuple) and all(isinstance(x, str) for x in item):
            shape = len(item)
        else:
            return 0  # not text: no bound from it
        if shape not in self._added:
            empty = "" if shape is str else ("",) * shape
            try:
                self._added[shape] = len(self.model.tokenize_inputs([empty])[0].ids)
            except Exception:  # noqa: BLE001 - a shape the model does not take: no bound from it
                self._added[shape] = 0
        return self._added[shape]

    def as_kind(self, kind: Kind) -> "Served":
        """This model, or its face of `kind` when it has one."""
        return next((face for face in (self, *self.faces) if face.kind == kind), self)

    # The model as its kind's protocol, for the members only that kind has (routes pick by kind first).
    @property
    def embedder(self) -> EmbeddingModel:
        return cast(EmbeddingModel, self.model)

    @property
    def reranker(self) -> RerankModel:
        return cast(RerankModel, self.model)

    @property
    def sparse(self) -> SparseModel:
        return cast(SparseModel, self.model)

    @property
    def multi(self) -> MultiVectorModel:
        return cast(MultiVectorModel, self.model)


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
        faces = {name: s.as_kind(kind) for name, s in self.models.items()}
        models = {name: face.model for name, face in faces.items()}
        fitting = {id(face.model) for face in faces.values() if face.kind == kind}
        name = p.pick_model(body, models, route, lambda model: id(model) in fitting, KIND_CLASS[kind],
                            self.settings.default_model)
        return faces[name]

    def _pick_any(self, body: Mapping[str, Any]) -> Served:
        """The model `body["model"]` names, else --default-model, else the first served model (routes every
        kind answers: /tokenize, /decode)."""
        name = p.optional_field(body, "model", (str,), "a string naming a served model")
        if name is None:
            name = self.settings.default_model or next(iter(self.models))
        if name not in self.models:
            raise p.NotFound(None, f"The model {name!r} is not served here; served models: {sorted(self.models)}.",
                             param="model")
        return self.models[name]

    async def _tokenize(self, served: Served, items: list[Any], truncate: bool, field_name: str) -> list[Any]:
        began = time.perf_counter()
        try:
            if _characters(items) <= INLINE_CHARACTERS:
                # A few short texts tokenize in well under a millisecond: on the event loop they never wait
                # in a thread queue behind a large request's tokenization.
                encodings = served.model.tokenize_inputs(items)
            else:
                # a model too full for this request refuses it at once, before the tokenizing
                least = least_tokens(items, served.model.max_seq_length, served.added_tokens(items[0]))
                with served.batcher.reserve(len(items), least):
                    loop = asyncio.get_running_loop()
                    encodings = await loop.run_in_executor(served.tokenizer_thread, served.model.tokenize_inputs,
                                                           items)
        except (TypeError, ValueError) as exc:
            raise p.InvalidField(None, str(exc).replace("inputs[", f"{field_name}["), param=field_name) from None
        finally:
            timing.note("tokenize", time.perf_counter() - began)
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

    def _truncate(self, body: Mapping[str, Any], pairs: bool = False) -> tuple[bool, bool]:
        """(truncate, from the left) from TEI's `truncate` and `truncation_direction` ("Right" or "Left")."""
        truncate = _bool_field(body, "truncate", self.settings.auto_truncate)
        direction = p.optional_field(body, "truncation_direction", (str,), '"Right" or "Left"')
        if direction not in (None, "Right", "right", "Left", "left"):
            raise p.InvalidField(
                None, f'`truncation_direction` must be "Right" or "Left", got {direction!r}.', param="truncation_direction"
            )
        left = direction in ("Left", "left")
        if left and pairs:
            raise p.BadRequest(
                None, '`truncation_direction` "Left" applies to single texts; pairs are cut on the right.',
                param="truncation_direction",
            )
        return truncate, left

    async def _cut_left(self, served: Served, texts: list[str], prompt_name: str | None) -> list[str]:
        """TEI's truncation_direction "Left": each text cut at its start so that, after the prompt, it fits."""
        prompt = p.with_prompt(served.model, [""], prompt_name)[0][0]
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(None, keep_the_end, served.model, texts, prompt)
        except (TypeError, ValueError) as exc:
            raise p.InvalidField(None, str(exc), param="inputs") from None

    def _text_request(self, body: Mapping[str, Any], route: str, kind: Kind) -> tuple[Served, list[str], bool, bool, str | None]:
        """(model, `inputs`, truncate, from the left, `prompt_name`) of a TEI text route."""
        served = self._pick(body, route, kind)
        texts, _ = p.texts_field(body, "inputs", self.settings.limits)
        truncate, left = self._truncate(body)
        return served, texts, truncate, left, p.optional_field(body, "prompt_name", (str,), "a string")

    async def _prepare(self, served: Served, texts: list[str], prompt_name: str | None, truncate: bool, left: bool,
                       field_name: str) -> tuple[list[str], list[Any], int | None]:
        """(the texts after a left cut, their encodings with the prompt in front, the prompt length)."""
        if left and truncate:
            texts = await self._cut_left(served, texts, prompt_name)
        prompted, prompt_length = p.with_prompt(served.model, texts, prompt_name)
        return texts, await self._tokenize(served, prompted, truncate, field_name), prompt_length

    async def _embed_rows(self, served: Served, texts: list[str], prompt_name: str | None, truncate: bool,
                          left: bool = False) -> tuple[np.ndarray, int]:
        _, encodings, prompt_length = await self._prepare(served, texts, prompt_name, truncate, left, "input")
        rows = await served.batcher.submit(encodings, key=("embed", prompt_length), prompt_length=prompt_length)
        vectors = np.stack(rows).astype(np.float32, copy=False)
        p.check_finite(vectors, served.name)
        return vectors, p.count_tokens(encodings)

    async def _chunks(self, served: Served, texts: list[str], chunking: p.Chunking, prompt_name: str | None,
                      field_name: str) -> list[Any]:
        """Each text embedded whole, chunk by chunk, by the model's encode_chunks in its worker thread (admitted
        at the cost of the whole texts' tokens): one ChunkedText per text."""
        if prompt_name is not None:
            raise p.BadRequest(None, "`prompt_name` does not apply with `chunking`: chunks are embedded as they are.",
                               param="prompt_name")
        from lightembed.chunking import whole_encodings

        model: Any = served.embedder
        loop = asyncio.get_running_loop()
        try:
            wholes = await loop.run_in_executor(None, whole_encodings, model, texts)
        except (TypeError, ValueError) as exc:
            raise p.InvalidField(None, str(exc).replace("inputs[", f"{field_name}["), param=field_name) from None
        if self._count_tokens is not None:
            self._count_tokens(served.name, p.count_tokens(wholes))
        results = await served.batcher.run_alone(
            wholes, lambda: p.embed_chunks(model, texts, chunking, field_name, served.batcher.max_items))
        p.check_finite([r.embeddings for r in results], served.name, field_name)
        return results

    # ----- OpenAI -------------------------------------------------------------------------------------------
    async def openai_embeddings(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST /v1/embeddings."""
        models = {n: s.model for n, s in self.models.items() if s.kind == "embed"}
        others = {n: s.model for n, s in self.models.items() if s.kind != "embed"}
        request = p.parse_embeddings_request(body, {**models, **others}, self.settings.limits,
                                             self.settings.default_model)
        served = self.models[request.model]
        if request.chunking is not None:
            return p.chunked_embeddings_response(request, await self._chunks(served, request.texts, request.chunking,
                                                                             None, "input"))
        vectors, tokens = await self._embed_rows(served, request.texts, None, True)
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
    async def tei_embed(self, body: Mapping[str, Any]) -> list[Any]:
        """POST /embed: `inputs`, `normalize` (default true), `truncate`, `prompt_name`, `dimensions`, `chunking`
        (protocol.Chunking: per input its chunks, [{"embedding", "start", "end", "tokens"}], or with `output`
        "document" one vector)."""
        served, texts, truncate, left, prompt_name = self._text_request(body, "/embed", "embed")
        normalize = _bool_field(body, "normalize", True)
        dimensions = p.positive_int_field(body, "dimensions")
        chunking = p.chunking_field(body)
        if chunking is not None:
            results = await self._chunks(served, texts, chunking, prompt_name, "inputs")
            if chunking.output == "document":
                return p.document_vectors(results, dimensions, normalize).tolist()
            return [p.chunk_entries(r, dimensions, normalize) for r in results]
        vectors, _ = await self._embed_rows(served, texts, prompt_name, truncate, left)
        return p.finish_embeddings(vectors, dimensions, normalize).tolist()

    async def tei_embed_all(self, body: Mapping[str, Any]) -> list[list[list[float]]]:
        """POST /embed_all: `inputs`, `truncate`, `truncation_direction`, `prompt_name`; the token embeddings of
        each input (one vector per token, special and prompt tokens included), as encode(output_value=
        "token_embeddings") gives them."""
        served, texts, truncate, left, prompt_name = self._text_request(body, "/embed_all", "embed")
        texts, encodings, _ = await self._prepare(served, texts, prompt_name, truncate, left, "inputs")
        model = served.embedder

        def token_embeddings() -> list[Any]:
            return list(model.encode(texts, prompt_name=prompt_name, output_value="token_embeddings",
                                     show_progress_bar=False))

        rows = await served.batcher.run_alone(encodings, token_embeddings)
        p.check_finite(rows, served.name, "inputs")
        return [np.asarray(r, dtype=np.float32).tolist() for r in rows]

    async def tei_similarity(self, body: Mapping[str, Any]) -> list[float]:
        """POST /similarity: `inputs: {"source_sentence", "sentences"}`, `truncate`, `truncation_direction`,
        `prompt_name`; the cosine similarity of the source sentence to each sentence."""
        served = self._pick(body, "/similarity", "embed")
        inputs = body.get("inputs")
        if not isinstance(inputs, Mapping):
            raise p.InvalidField(
                None, '`inputs` is required: {"source_sentence": "...", "sentences": ["...", ...]}.', param="inputs"
            )
        source = _text(inputs, "source_sentence", self.settings.limits)
        sentences, _ = p.texts_field(inputs, "sentences", self.settings.limits)
        truncate, left = self._truncate(body)
        prompt_name = p.optional_field(body, "prompt_name", (str,), "a string")
        vectors, _ = await self._embed_rows(served, [source, *sentences], prompt_name, truncate, left)
        unit = p.finish_embeddings(vectors, None, True)
        return [float(x) for x in unit[1:] @ unit[0]]

    async def tei_tokenize(self, body: Mapping[str, Any]) -> list[list[dict[str, Any]]]:
        """POST /tokenize: `inputs`, `add_special_tokens` (default true), `prompt_name`; each input's tokens as
        {"id", "text", "special", "start", "stop"} (character offsets; null for special tokens), after the
        model's truncation."""
        served = self._pick_any(body)
        texts, _ = p.texts_field(body, "inputs", self.settings.limits)
        specials = _bool_field(body, "add_special_tokens", True)
        prompt_name = p.optional_field(body, "prompt_name", (str,), "a string")
        texts, _ = p.with_prompt(served.model, texts, prompt_name)
        encodings = await self._tokenize(served, texts, True, "inputs")
        out = []
        for text, enc in zip(texts, encodings):
            tokens = []
            for token_id, token, special, (start, stop) in zip(enc.ids, enc.tokens, enc.special_tokens_mask, enc.offsets):
                if special and not specials:
                    continue
                tokens.append({"id": int(token_id), "text": token if special else text[start:stop],
                               "special": bool(special), "start": None if special else start,
                               "stop": None if special else stop})
            out.append(tokens)
        return out

    async def tei_decode(self, body: Mapping[str, Any]) -> list[str]:
        """POST /decode: `ids` (a list of token ids, or a list of such lists), `skip_special_tokens` (default
        true); the text of each."""
        served = self._pick_any(body)
        ids = body.get("ids")
        def is_id(x: Any) -> bool:
            return isinstance(x, int) and not isinstance(x, bool) and x >= 0

        if isinstance(ids, list) and ids and all(is_id(x) for x in ids):
            batch = [ids]
        elif isinstance(ids, list) and ids and all(isinstance(r, list) and all(is_id(x) for x in r) for r in ids):
            batch = ids
        else:
            raise p.InvalidField(None, "`ids` is required: a list of token ids or a list of such lists.", param="ids")
        if sum(len(r) for r in batch) > self.settings.limits.max_chars:
            raise p.PayloadTooLarge(None, f"`ids` holds more than {self.settings.limits.max_chars} ids.", param="ids")
        skip = _bool_field(body, "skip_special_tokens", True)
        tokenizer = served.model.tokenizer
        vocab = tokenizer.get_vocab_size(with_added_tokens=True)
        for r, row in enumerate(batch):
            for i, x in enumerate(row):
                if x >= vocab:
                    raise p.InvalidField(None, f"`ids` holds {x}, beyond the model's {vocab} tokens.", param="ids")
        return list(tokenizer.decode_batch(batch, skip_special_tokens=skip))

    async def tei_embed_sparse(self, body: Mapping[str, Any]) -> list[list[dict[str, Any]]]:
        """POST /embed_sparse: `inputs`, `truncate`, `prompt_name`; [{"index": token id, "value": weight}] per input."""
        served, texts, truncate, left, prompt_name = self._text_request(body, "/embed_sparse", "sparse")
        _, encodings, _ = await self._prepare(served, texts, prompt_name, truncate, left, "inputs")
        k = served.sparse.max_active_dims
        rows = await served.batcher.submit(encodings, key=("sparse", k), max_active_dims=k)
        p.check_finite([row.values for row in rows], served.name, "inputs")
        return [
            [{"index": int(i), "value": float(v)} for i, v in zip(row.indices, row.values)] for row in rows
        ]

    async def _rerank_scores(self, served: Served, query: str, docs: list[str], raw: bool, truncate: bool) -> tuple[np.ndarray, int]:
        model = served.reranker
        if model.num_labels != 1:
            raise p.BadRequest(
                None, f"The model {served.name!r} has {model.num_labels} labels; reranking needs a one-label model.",
                param="model",
            )
        prompt = p.with_prompt(model, [""])[0][0]  # the model's default prompt, put where its predict() puts it
        encodings = await self._tokenize(served, model.pair_inputs([(query, d) for d in docs], prompt), truncate, "texts")
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
        scores, _ = await self._rerank_scores(served, query, texts, raw, self._truncate(body, pairs=True)[0])
        out = []
        for i in np.argsort(-scores, kind="stable"):
            entry: dict[str, Any] = {"index": int(i), "score": float(scores[i])}
            if return_text:
                entry["text"] = texts[i]
            out.append(entry)
        return out

    async def tei_predict(self, body: Mapping[str, Any]) -> list[Any]:
        """POST /predict: sequence classification. `inputs`: a text, a [text, text] pair, or a list of those;
        `raw_scores` (default false: sigmoid for one label, softmax for several, as TEI); `truncate`. For each
        input, every label with its score, best first ({"score", "label"}); one list for a single input."""
        served = self._pick(body, "/predict", "rerank")
        items, single = predict_inputs(body, self.settings.limits)
        raw = _bool_field(body, "raw_scores", False)
        truncate, _ = self._truncate(body, pairs=True)
        model = served.reranker
        encodings = await self._tokenize(served, [tuple(i) if isinstance(i, list) else i for i in items], truncate, "inputs")
        from lightembed.activations import Identity

        labels_n = model.num_labels
        rows = await served.batcher.submit(encodings, key=("predict", raw), activation_fn=Identity())
        logits = np.stack([np.asarray(r, dtype=np.float64).reshape(-1) for r in rows])
        p.check_finite(logits, served.name, "inputs")
        if raw:
            scores = logits
        elif labels_n == 1:
            scores = 1 / (1 + np.exp(-logits))
        else:
            shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
            scores = shifted / shifted.sum(axis=1, keepdims=True)
        names = self._labels(served)
        out = [
            [{"score": float(row[j]), "label": names[j]} for j in np.argsort(-row, kind="stable")] for row in scores
        ]
        return out[0] if single else out

    def _labels(self, served: Served) -> list[str]:
        model = served.reranker
        id2label = model.config.get("id2label") if hasattr(model.config, "get") else None
        id2label = id2label or {}
        return [str(id2label.get(str(i), id2label.get(i, f"LABEL_{i}"))) for i in range(model.num_labels)]

    # ----- Cohere v2 ----------------------------------------------------------------------------------------
    async def cohere_embed(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST /v2/embed: `model`, `texts`, `input_type` (picks the model's prompt of that name, see
        COHERE_PROMPTS), `embedding_types` (float, int8, uint8, binary, ubinary, base64), `output_dimension`,
        `truncate` (NONE: 413 when too long, START: cut the start, END: cut the end, the default)."""
        served = self._pick(body, "/v2/embed", "embed")
        texts, _ = p.texts_field(body, "texts", self.settings.limits)
        input_type = p.optional_field(body, "input_type", (str,), "a string")
        prompt_name = cohere_prompt(served.model, input_type)
        types = body.get("embedding_types", ["float"])
        if types is None:
            types = ["float"]
        if not isinstance(types, list) or not types or any(t not in COHERE_TYPES for t in types):
            raise p.InvalidField(
                None, f"`embedding_types` must be a non-empty list of {list(COHERE_TYPES)}, got {types!r}.",
                param="embedding_types",
            )
        dimension = p.positive_int_field(body, "output_dimension")
        full = served.embedder.get_sentence_embedding_dimension()
        if dimension is not None and full is not None and dimension > full:
            raise p.InvalidField(
                None, f"`output_dimension` is {dimension}; the model {served.name!r} gives at most {full}.",
                param="output_dimension",
            )
        if body.get("max_tokens") is not None or body.get("inputs") is not None or body.get("images") is not None:
            field_name = next(f for f in ("max_tokens", "inputs", "images") if body.get(f) is not None)
            raise p.BadRequest(
                None, f"`{field_name}` is not supported here: send `texts` (cut at the model's max_seq_length).",
                param=field_name,
            )
        truncate = p.optional_field(body, "truncate", (str,), '"NONE", "START" or "END"') or "END"
        if truncate.upper() not in ("NONE", "START", "END"):
            raise p.InvalidField(None, f'`truncate` must be "NONE", "START" or "END", got {truncate!r}.', param="truncate")
        truncate = truncate.upper()
        vectors, tokens = await self._embed_rows(served, texts, prompt_name, truncate != "NONE", truncate == "START")
        unit = p.finish_embeddings(vectors, dimension, True)
        return {
            "id": f"embed-{time.time_ns()}",
            "embeddings": {t: quantized(unit, t) for t in dict.fromkeys(types)},
            "texts": texts,
            "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": tokens}},
            "response_type": "embeddings_by_type",
        }

    # ----- Jina multi-vector ----------------------------------------------------------------------------------
    async def jina_multi_vector(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST /v1/multi-vector (Jina's route for ColBERT models): `model`, `input` (a string or a list),
        `input_type` ("query", or "document", the default), `embedding_type` ("float", the default, or "base64":
        each token vector as base64 of its little-endian float32 bytes), `dimensions` (the first N components of
        each token vector, L2-normalized again). Per input its token vectors, as MultiVectorEncoder.encode_query
        / encode_document give them (query expansion, the skiplist and query_length / document_length applied)."""
        served = self._pick(body, "/v1/multi-vector", "multi_vector")
        texts, _ = p.texts_field(body, "input", self.settings.limits)
        input_type = p.optional_field(body, "input_type", (str,), '"query" or "document"') or "document"
        if input_type not in ("query", "document"):
            raise p.InvalidField(None, f'`input_type` must be "query" or "document", got {input_type!r}.',
                                 param="input_type")
        embedding_type = p.optional_field(body, "embedding_type", (str,), '"float" or "base64"') or "float"
        if embedding_type not in ("float", "base64"):
            raise p.InvalidField(None, f'`embedding_type` must be "float" or "base64", got {embedding_type!r}.',
                                 param="embedding_type")
        dimensions = p.positive_int_field(body, "dimensions")
        model = served.multi
        full = model.get_embedding_dimension()
        if dimensions is not None and full is not None and dimensions > full:
            raise p.InvalidField(
                None, f"`dimensions` is {dimensions}; the model {served.name!r} gives at most {full}.", param="dimensions"
            )
        # for admission (the request's cost) and usage: the texts as the model tokenizes them, before its task's
        # shorter cut and its query expansion
        encodings = await self._tokenize(served, texts, True, "input")
        encode = model.encode_query if input_type == "query" else model.encode_document

        def token_vectors() -> list[Any]:
            return list(encode(texts, show_progress_bar=False))

        rows = await served.batcher.run_alone(encodings, token_vectors)
        p.check_finite(rows, served.name, "input")
        data = []
        for i, row in enumerate(rows):
            vectors = p.finish_embeddings(np.asarray(row, dtype=np.float32), dimensions, dimensions is not None)
            embeddings = [p.encode_vector(v, "base64") for v in vectors] if embedding_type == "base64" else vectors.tolist()
            data.append({"object": "embeddings", "index": i, "embeddings": embeddings})
        tokens = p.count_tokens(encodings)
        return {"object": "list", "model": served.name, "data": data,
                "usage": {"total_tokens": tokens, "prompt_tokens": tokens}}

    async def tei_root(self, body: Mapping[str, Any]) -> Any:
        """POST /: TEI answers with its model's own route; huggingface_hub's InferenceClient posts every task
        here. A body with `query` and `texts` is a rerank, `inputs` as {"source_sentence", "sentences"} a
        similarity; otherwise the kind of the model asked for (`model`, else --default-model, else the served
        models) decides: embed, then classify (/predict; a single input's labels nested in a list, as the
        Inference API answers), then sparse."""
        if "query" in body and "texts" in body:
            return await self.tei_rerank(body)
        if isinstance(body.get("inputs"), Mapping):
            return await self.tei_similarity(body)
        name = body.get("model") if isinstance(body.get("model"), str) else self.settings.default_model
        kinds = {self.models[name].kind} if name in self.models else {s.kind for s in self.models.values()}
        if kinds == {"multi_vector"}:  # no TEI route gives token vectors per input in a client-parsable shape
            raise p.BadRequest(
                None, "A multi-vector (MultiVectorEncoder) model answers POST /v1/multi-vector, not /.", param="model"
            )
        if "embed" in kinds or not kinds - {"embed"}:
            return await self.tei_embed(body)
        if "rerank" in kinds:
            result = await self.tei_predict(body)
            # a single input's labels as a list of one list: the Inference API shape InferenceClient parses
            return [result] if result and isinstance(result[0], dict) else result
        return await self.tei_embed_sparse(body)

    def tei_info(self) -> dict[str, Any]:
        """GET /info: TEI's fields for the first served model, and every served model under "models"."""
        first = next(iter(self.models.values()))
        return {**self._info(first), "models": [self._info(s) for s in self.models.values()]}

    def _info(self, served: Served) -> dict[str, Any]:
        model = served.model
        if served.kind == "rerank":
            labels = model.config.get("id2label") or {str(i): f"LABEL_{i}" for i in range(served.reranker.num_labels)}
            model_type: dict[str, Any] = {"reranker": {"id2label": labels, "label2id": {v: int(k) for k, v in labels.items()}}}
        elif served.kind == "sparse":
            model_type = {"embedding": {"pooling": "splade"}}
        elif served.kind == "multi_vector":
            model_type = {"multi_vector": {"dimension": served.multi.get_embedding_dimension()}}
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
    async def cohere_rerank_v2(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST /v2/rerank (what cohere.ClientV2.rerank posts): as /v1/rerank; `max_tokens_per_doc` is refused
        (documents are cut at the model's max_seq_length)."""
        if body.get("max_tokens_per_doc") is not None:
            raise p.BadRequest(
                None, "`max_tokens_per_doc` is not supported here: documents are cut at the model's max_seq_length.",
                param="max_tokens_per_doc",
            )
        return await self.cohere_rerank(body, "/v2/rerank")

    async def cohere_rerank(self, body: Mapping[str, Any], route: str = "/v1/rerank") -> dict[str, Any]:
        """POST /v1/rerank: `query`, `documents` (strings or {"text": ...}), `top_n`, `return_documents`."""
        served = self._pick(body, route, "rerank")
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


def keep_the_end(model: ServedModel, texts: list[str], prefix: str = "") -> list[str]:
    """Each text cut at its start, on a token boundary, so that `prefix + text` fits the model's max_seq_length
    (TEI's truncation_direction "Left"); texts that fit are unchanged. Uses the model's own tokenize_inputs (its
    truncation keeps the overflowing tokens with their character offsets)."""
    out = []
    for text in texts:
        for _ in range(8):  # a cut can tokenize differently at its edge: cut one token more and look again
            enc = model.tokenize_inputs([prefix + text])[0]
            if not enc.overflowing:
                break
            pieces = [enc, *enc.overflowing]
            starts = sorted({start for piece in pieces
                             for (start, _), special in zip(piece.offsets, piece.special_tokens_mask) if not special})
            fits = sum(1 for special in enc.special_tokens_mask if not special)  # content tokens that fit
            in_text = [start - len(prefix) for start in starts if start >= len(prefix)]
            keep = fits - (len(starts) - len(in_text))  # the prefix's tokens are kept whole
            if keep <= 0:
                raise LightembedValueError(f"The prompt alone fills the model's {model.max_seq_length} tokens: no room is left "
                                 "for the text.")
            cut = in_text[-keep] if keep <= len(in_text) else 0
            if cut == 0:
                cut = in_text[1] if len(in_text) > 1 else len(text)
            text = text[cut:]
        out.append(text)
    return out



COHERE_TYPES = ("float", "int8", "uint8", "binary", "ubinary", "base64")
COHERE_PROMPTS = {
    "search_query": ("search_query", "query"),
    "search_document": ("search_document", "document", "passage", "corpus"),
    "classification": ("classification",),
    "clustering": ("clustering",),
}
"""Cohere's input_type -> the model prompt names tried, in order; with none of them, no prompt (the model's
default prompt, if it has one)."""


def cohere_prompt(model: ServedModel, input_type: str | None) -> str | None:
    """The prompt name Cohere's `input_type` maps to for `model` (COHERE_PROMPTS)."""
    if input_type is None:
        return None
    if input_type not in COHERE_PROMPTS:
        raise p.InvalidField(
            None, f"`input_type` must be one of {list(COHERE_PROMPTS)}, got {input_type!r}.", param="input_type"
        )
    return next((name for name in COHERE_PROMPTS[input_type] if name in (model.prompts or {})), None)


def quantized(unit: np.ndarray, kind: str) -> list[list[Any]]:
    """Unit-length vectors as Cohere's embedding type `kind`, with lightembed's quantize_embeddings: int8/uint8
    over the fixed range [-1, 1] that every component of a unit vector lies in (so a vector's codes do not
    depend on the other texts of its request), binary/ubinary as packed sign bits."""
    from lightembed.util import quantize_embeddings

    if kind == "float":
        return unit.astype(np.float32).tolist()
    if kind == "base64":
        return [p.encode_vector(v, "base64") for v in unit]
    ranges = np.stack([-np.ones(unit.shape[1]), np.ones(unit.shape[1])]) if kind in ("int8", "uint8") else None
    return quantize_embeddings(np.asarray(unit), kind, ranges=ranges).astype(np.int64).tolist()  # type: ignore[call-overload]  # kind: a checked precision name


def predict_inputs(body: Mapping[str, Any], limits: p.Limits) -> tuple[list[Any], bool]:
    """TEI's /predict `inputs`: a text, a [text, text] pair, or a list of texts and pairs; (items, single)."""
    value = body.get("inputs")

    def is_pair(x: Any) -> bool:
        return isinstance(x, list) and len(x) == 2 and all(isinstance(t, str) for t in x)

    items: list[Any]
    if isinstance(value, str) or is_pair(value):
        items, single = [value], True
    elif isinstance(value, list) and value and all(isinstance(x, str) or is_pair(x) for x in value):
        items, single = list(value), False
    else:
        raise p.InvalidField(
            None, "`inputs` must be a text, a [text, text] pair, or a non-empty list of texts and pairs.", param="inputs"
        )
    flat = [t for item in items for t in ([item] if isinstance(item, str) else item)]
    p.texts_field({"inputs": flat}, "inputs", p.Limits(limits.max_inputs * 2, limits.max_chars, limits.max_body_bytes))
    if len(items) > limits.max_inputs:
        raise p.PayloadTooLarge(
            None, f"`inputs` has {len(items)} inputs; this server takes at most {limits.max_inputs} per request.",
            param="inputs",
        )
    return items, single
