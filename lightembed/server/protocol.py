"""The OpenAI embeddings protocol without a web framework: parse and check a request, run it, build the answer,
and the typed errors every route maps to an HTTP status. No starlette/uvicorn import here, so the serverless
handlers (lightembed.serverless) and the ASGI app share it.


Public API (kept stable; new names may be added, none removed):

- `Limits(max_inputs=2048, max_chars=100_000, max_body_bytes=4 MiB)`: what one request may hold.
- `read_json(raw: bytes, limits) -> dict`: the request body as a JSON object (413 too big, 422 malformed).
- `parse_embeddings_request(body: dict, models, limits=Limits()) -> EmbeddingsRequest`: checks the body of
  `POST /v1/embeddings`; `models` maps served names to loaded models (only SentenceTransformer-like ones, i.e.
  with a `prompt_length` method, can embed). Raises an `ApiError`.
- `embed(request, model) -> (vectors, tokens)`: runs a request on its model in the calling thread with the
  model's own stages (tokenize_inputs, plan, pad, forward); `vectors` are (n, dim) float32 as
  `model.encode(texts, normalize_embeddings=True, truncate_dim=request.dimensions)` gives them, `tokens` the
  tokens the model ran on. The server's batcher gives the same result by batching many requests together.
- `with_prompt(model, texts, prompt_name=None) -> (texts, prompt_length)`: the model's prompt put in front.
- `finish_embeddings(vectors, dimensions, normalize=True) -> vectors`: the per-request step after forward.
- `embeddings_response(request, vectors, tokens) -> dict`: the OpenAI response body (float lists or base64 of
  little-endian float32, as the official client decodes it).
- `chunking_field(body) -> Chunking | None`: a request's `chunking` object (texts longer than the model embedded
  chunk by chunk with the model's `encode_chunks`); `embed_chunks(model, texts, chunking)` runs it (one
  `ChunkedText` per text), `chunk_entries` / `document_vectors` shape its results, `answer(request, model)` runs
  an embeddings request either way and builds its response body (`chunked_embeddings_response` with chunking).
- `ApiError(status, message, type, param=None)` and one subclass per kind: `BadRequest` 400, `Unauthorized` 401,
  `NotFound` 404, `PayloadTooLarge` 413, `InvalidField` 422, `Overloaded` 429 (with `retry_after` seconds),
  `Unavailable` 503, `RequestTimeout` 503, `NonFinite` 500 (NaN/inf output; `check_finite(values, model)`). `error.openai_body()` is OpenAI's `{"error": {...}}`,
  `error.tei_body()` TEI's `{"error", "error_type"}`, `error.headers()` the headers to send (Retry-After).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from lightembed.errors import LightembedError

__all__ = [
    "ApiError",
    "BadRequest",
    "Unauthorized",
    "NotFound",
    "PayloadTooLarge",
    "InvalidField",
    "Overloaded",
    "Unavailable",
    "RequestTimeout",
    "NonFinite",
    "check_finite",
    "Limits",
    "EmbeddingsRequest",
    "read_json",
    "parse_embeddings_request",
    "embed",
    "finish_embeddings",
    "embeddings_response",
    "count_tokens",
    "with_prompt",
    "Chunking",
    "chunking_field",
    "embed_chunks",
    "chunk_entries",
    "document_vectors",
    "chunked_embeddings_response",
    "answer",
]


# ----- errors ---------------------------------------------------------------------------------------------------
class ApiError(LightembedError):
    """An error a client caused or must be told about: an HTTP status, a message and an error type."""

    status = 500
    type = "server_error"
    tei_type = "Backend"

    def __init__(
        self, status: int | str | None = None, message: str = "", type: str | None = None, param: str | None = None
    ) -> None:
        # Positional (status, message, type) as well as Subclass(message) are accepted.
        code: int | str | None = status
        if isinstance(status, str) and not message:
            code, message = None, status
        super().__init__(message)
        if code is not None:
            self.status = int(code)
        if type is not None:
            self.type = type
        self.message = message
        self.param = param

    def headers(self) -> dict[str, str]:
        return {}

    def openai_body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.type}}

    def tei_body(self) -> dict[str, Any]:
        return {"error": self.message, "error_type": self.tei_type}


class BadRequest(ApiError):
    """400: the request is well-formed but cannot be served (wrong model kind for the route, token ids ...)."""

    status, type, tei_type = 400, "invalid_request_error", "Validation"


class Unauthorized(ApiError):
    """401: no or a wrong API key."""

    status, type, tei_type = 401, "invalid_api_key", "Unauthorized"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class NotFound(ApiError):
    """404: no model served under that name."""

    status, type, tei_type = 404, "model_not_found", "NotFound"


class PayloadTooLarge(ApiError):
    """413: body, number of inputs or length of an input over the server's limits."""

    status, type, tei_type = 413, "payload_too_large", "Validation"


class InvalidField(ApiError):
    """422: malformed JSON or a field of the wrong type or value; `param` names the field."""

    status, type, tei_type = 422, "invalid_request_error", "Validation"


class Overloaded(ApiError):
    """429: the model's queue is full; retry after `retry_after` seconds."""

    status, type, tei_type = 429, "rate_limit_exceeded", "Overloaded"

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(None, message)
        self.retry_after = max(1, int(retry_after))

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class Unavailable(ApiError):
    """503: the server is starting or shutting down."""

    status, type, tei_type = 503, "service_unavailable", "Unhealthy"


class RequestTimeout(ApiError):
    """503: the request did not finish within the server's per-request timeout."""

    status, type, tei_type = 503, "timeout", "Overloaded"


class NonFinite(ApiError):
    """500: the model gave NaN or infinite values (damaged weights, an overflow): an error, never a vector."""

    status, type, tei_type = 500, "server_error", "Backend"


def check_finite(values: Any, model: str, field: str = "input") -> None:
    """NonFinite naming the first input whose result holds NaN or inf; `values` is an array (rows first) or a
    list of arrays, one per input."""
    if isinstance(values, np.ndarray) and values.dtype.kind == "f":
        if np.isfinite(values).all():  # one pass over the whole answer; rows are looked at only to name one
            return
        rows: Any = values
    else:
        rows = values if isinstance(values, list) else list(values)
    for i, row in enumerate(rows):
        if not np.isfinite(np.asarray(row, dtype=np.float64)).all():
            raise NonFinite(
                None,
                f"The model {model!r} gave non-finite values (NaN or inf) for `{field}[{i}]`; its weights may be "
                "damaged. No vector is returned; the server reports itself unhealthy.",
            )


# ----- limits and parsing ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Limits:
    """What one request may hold: inputs, characters per input and body bytes."""

    max_inputs: int = 2048
    max_chars: int = 100_000
    max_body_bytes: int = 4 * 2**20


def read_json(raw: bytes, limits: Limits = Limits()) -> dict[str, Any]:
    """The body as a JSON object: PayloadTooLarge over `limits.max_body_bytes`, InvalidField when it is not JSON
    or not an object."""
    if len(raw) > limits.max_body_bytes:
        raise PayloadTooLarge(f"The request body is {len(raw)} bytes; this server takes at most {limits.max_body_bytes}.")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidField(None, f"The request body is not valid JSON: {exc}.", param="body") from None
    except RecursionError:
        raise InvalidField(None, "The request body is JSON nested too deeply to read.", param="body") from None
    if not isinstance(body, dict):
        raise InvalidField(None, f"The request body must be a JSON object, got {kind_of(body)}.", param="body")
    return body


def kind_of(value: Any) -> str:
    """How a JSON value is named in error messages: "an object", "a string", "null" ..."""
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    if type(value) in names:
        return names[type(value)]
    return "a number" if isinstance(value, (int, float)) else type(value).__name__


def texts_field(body: Mapping[str, Any], field: str, limits: Limits, *, allow_token_ids: bool = False) -> tuple[list[str], bool]:
    """`body[field]` as (texts, was_one_string): a string or a non-empty list of strings within `limits`.
    Token-id lists are refused with BadRequest (this server takes text)."""
    if field not in body:
        raise InvalidField(None, f"`{field}` is required: a string or a list of strings.", param=field)
    value = body[field]
    single = isinstance(value, str)
    items = [value] if single else value
    if not isinstance(items, list):
        raise InvalidField(None, f"`{field}` must be a string or a list of strings, got {kind_of(value)}.", param=field)
    if not items:
        raise InvalidField(None, f"`{field}` must not be empty.", param=field)
    def is_int(x: Any) -> bool:
        return isinstance(x, int) and not isinstance(x, bool)

    token_ids = all(is_int(x) for x in items) or all(isinstance(x, list) and x and all(map(is_int, x)) for x in items)
    if token_ids and not allow_token_ids:
        raise BadRequest(
            None,
            f"`{field}` holds token ids; this server takes text only: send the strings instead. (LangChain's "
            "OpenAIEmbeddings tokenizes with tiktoken and sends token ids unless it is created with "
            "`check_embedding_ctx_length=False`.)",
            param=field,
        )
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise InvalidField(None, f"`{field}[{i}]` must be a string, got {kind_of(item)}.", param=f"{field}[{i}]")
    if len(items) > limits.max_inputs:
        raise PayloadTooLarge(
            None, f"`{field}` has {len(items)} inputs; this server takes at most {limits.max_inputs} per request.",
            param=field,
        )
    for i, item in enumerate(items):
        if len(item) > limits.max_chars:
            where = field if single else f"{field}[{i}]"
            raise PayloadTooLarge(
                None, f"`{where}` has {len(item)} characters; this server takes at most {limits.max_chars} per input.",
                param=where,
            )
    return list(items), single


def optional_field(body: Mapping[str, Any], field: str, kinds: tuple[type, ...], what: str) -> Any:
    """`body[field]` or None; InvalidField when present (not null) and not of `kinds` (bools are not ints)."""
    value = body.get(field)
    if value is None:
        return None
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        raise InvalidField(None, f"`{field}` must be {what}, got {kind_of(value)}.", param=field)
    return value


def positive_int_field(body: Mapping[str, Any], field: str) -> int | None:
    value = optional_field(body, field, (int,), "a positive integer")
    if value is not None and value < 1:
        raise InvalidField(None, f"`{field}` must be a positive integer, got {value}.", param=field)
    return value


CHUNKING_OPTIONS = ("chunk_size", "overlap", "mode", "output")
CHUNK_MODES = ("windows", "late")
CHUNK_OUTPUTS = ("chunks", "document")


@dataclass(frozen=True)
class Chunking:
    """A request's `chunking` object: each input embedded whole, chunk by chunk, instead of cut at the model's
    max_seq_length (the model's `encode_chunks`). `chunk_size`: tokens per chunk, special tokens included (None:
    max_seq_length); `overlap`: tokens consecutive chunks share; `mode`: "windows" (each chunk run on its own) or
    "late" (the whole text run once, each chunk the mean of its tokens); `output`: "chunks" (every chunk's vector
    with its character span) or "document" (one token-weighted vector per input)."""

    chunk_size: int | None = None
    overlap: int = 0
    mode: str = "windows"
    output: str = "chunks"


def chunking_field(body: Mapping[str, Any], field: str = "chunking") -> Chunking | None:
    """`body[field]` as a Chunking, or None when absent or null; InvalidField naming the bad option."""
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidField(
            None, f"`{field}` must be an object with any of {list(CHUNKING_OPTIONS)}, got {kind_of(value)}.", param=field
        )
    for key in value:
        if key not in CHUNKING_OPTIONS:
            raise InvalidField(
                None, f"`{field}.{key}` is not a chunking option; the options are {list(CHUNKING_OPTIONS)}.",
                param=f"{field}.{key}",
            )
    size, overlap = value.get("chunk_size"), value.get("overlap", 0)
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise InvalidField(None, f"`{field}.chunk_size` must be a positive integer of tokens, got {size!r}.",
                           param=f"{field}.chunk_size")
    if overlap is None:
        overlap = 0
    if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0:
        raise InvalidField(None, f"`{field}.overlap` must be a non-negative integer of tokens, got {overlap!r}.",
                           param=f"{field}.overlap")
    choices = {}
    for key, allowed in (("mode", CHUNK_MODES), ("output", CHUNK_OUTPUTS)):
        choice = value.get(key) or allowed[0]
        if choice not in allowed:
            raise InvalidField(None, f"`{field}.{key}` must be one of {list(allowed)}, got {choice!r}.",
                               param=f"{field}.{key}")
        choices[key] = choice
    return Chunking(size, overlap, choices["mode"], choices["output"])


def can_embed(model: Any) -> bool:
    """Whether `model` gives dense sentence embeddings (a SentenceTransformer)."""
    return hasattr(model, "prompt_length") and hasattr(model, "get_sentence_embedding_dimension")


@dataclass(frozen=True)
class EmbeddingsRequest:
    """A checked `POST /v1/embeddings` request."""

    model: str
    texts: list[str]
    single: bool
    encoding_format: str = "float"
    dimensions: int | None = None
    user: str | None = None
    chunking: Chunking | None = None


def pick_model(body: Mapping[str, Any], models: Mapping[str, Any], route: str, fits: Any, kind: str,
               default: str | None = None) -> str:
    """The served name `body["model"]` asks for: NotFound when nothing is served under it; with no `model`,
    `default` (the server's --default-model) when it fits, else the only served model that fits (InvalidField
    when there are several, BadRequest when there is none); BadRequest naming the model when it does not fit
    the route."""
    name = optional_field(body, "model", (str,), "a string naming a served model")
    if name is None:
        if default is not None and default in models and fits(models[default]):
            return default
        fitting = [n for n, m in models.items() if fits(m)]
        if not fitting:
            raise BadRequest(None, f"No {kind} model is served here, so {route} cannot be answered.", param="model")
        if len(fitting) > 1:
            raise InvalidField(
                None,
                f"`model` is required for {route}: one of {fitting} ({kind} models served here), or start the "
                "server with --default-model.",
                param="model",
            )
        return fitting[0]
    if name not in models:
        raise NotFound(None, f"The model {name!r} is not served here; served models: {sorted(models)}.", param="model")
    if not fits(models[name]):
        raise BadRequest(
            None,
            f"The model {name!r} is a {type(models[name]).__name__}, which cannot answer {route} (needs a {kind} model).",
            param="model",
        )
    return name


def parse_embeddings_request(body: Mapping[str, Any], models: Mapping[str, Any], limits: Limits = Limits(),
                             default: str | None = None) -> EmbeddingsRequest:
    """Check an OpenAI embeddings request body against the served `models` (served name -> model); `default`
    is the model a request without `model` gets."""
    if not isinstance(body, Mapping):
        raise InvalidField(None, f"The request body must be a JSON object, got {kind_of(body)}.", param="body")
    name = pick_model(body, models, "/v1/embeddings", can_embed, "embedding (SentenceTransformer)", default)
    texts, single = texts_field(body, "input", limits)
    encoding_format = optional_field(body, "encoding_format", (str,), '"float" or "base64"') or "float"
    if encoding_format not in ("float", "base64"):
        raise InvalidField(
            None, f'`encoding_format` must be "float" or "base64", got {encoding_format!r}.', param="encoding_format"
        )
    dimensions = positive_int_field(body, "dimensions")
    full = models[name].get_sentence_embedding_dimension()
    if dimensions is not None and full is not None and dimensions > full:
        raise InvalidField(
            None, f"`dimensions` is {dimensions}; the model {name!r} gives at most {full}.", param="dimensions"
        )
    user = optional_field(body, "user", (str,), "a string")
    chunking = chunking_field(body)
    if chunking is not None and not hasattr(models[name], "encode_chunks"):
        raise BadRequest(None, f"The model {name!r} cannot chunk its inputs.", param="chunking")
    return EmbeddingsRequest(name, texts, single, encoding_format, dimensions, user, chunking)


# ----- running and answering ------------------------------------------------------------------------------------
def count_tokens(encodings: Sequence[Any]) -> int:
    """Tokens the model runs on for these encodings (special tokens included, after truncation)."""
    return int(sum(len(e.ids) for e in encodings))


def finish_embeddings(vectors: np.ndarray, dimensions: int | None, normalize: bool = True) -> np.ndarray:
    """What encode(truncate_dim=dimensions, normalize_embeddings=normalize) does after forward: truncate, then
    L2-normalize (so truncated Matryoshka vectors are unit length again, as OpenAI's are)."""
    from lightembed.modules import l2_normalize

    if dimensions is not None:
        vectors = vectors[:, :dimensions]
    if normalize:
        vectors = l2_normalize(vectors)
    return np.ascontiguousarray(vectors, dtype=np.float32)


def with_prompt(model: Any, texts: list[str], prompt_name: str | None = None) -> tuple[list[str], int | None]:
    """The texts as encode() runs them (the named prompt, else the model's default prompt, in front) and the
    prompt length forward() needs. An unknown prompt name is an InvalidField."""
    from lightembed.inputs import resolve_prompt

    try:
        prompt = resolve_prompt(model.prompts, model.default_prompt_name, None, prompt_name)
    except (TypeError, ValueError) as exc:
        raise InvalidField(None, str(exc), param="prompt_name") from None
    if not prompt:
        return texts, None
    length = model.prompt_length(prompt) if hasattr(model, "prompt_length") else None
    return [prompt + t for t in texts], length


def embed(request: EmbeddingsRequest, model: Any, batch_size: int = 32) -> tuple[np.ndarray, int]:
    """Run `request` on `model` in this thread with the model's stages; (vectors, tokens)."""
    texts, prompt_length = with_prompt(model, request.texts)
    try:
        encodings = model.tokenize_inputs(texts)
    except (TypeError, ValueError) as exc:  # e.g. a lone surrogate, named by its input
        raise InvalidField(None, str(exc), param="input") from None
    vectors = np.empty((len(encodings), 0), dtype=np.float32)
    for idx in model.plan(encodings, batch_size):
        out = model.forward(model.pad([encodings[i] for i in idx]), prompt_length)
        if vectors.shape[1] != out.shape[1]:
            vectors = np.empty((len(encodings), out.shape[1]), dtype=np.float32)
        vectors[idx] = out
    check_finite(vectors, request.model)
    return finish_embeddings(vectors, request.dimensions), count_tokens(encodings)


def encode_vector(vector: np.ndarray, encoding_format: str) -> Any:
    """One embedding as OpenAI sends it: a list of floats, or base64 of its little-endian float32 bytes."""
    if encoding_format == "base64":
        return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return vector.astype(np.float32).tolist()


def embeddings_response(request: EmbeddingsRequest, vectors: np.ndarray, tokens: int) -> dict[str, Any]:
    """The OpenAI embeddings response body for `request`, one entry per input in input order."""
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": encode_vector(v, request.encoding_format)}
            for i, v in enumerate(vectors)
        ],
        "model": request.model,
        "usage": {"prompt_tokens": int(tokens), "total_tokens": int(tokens)},
    }


# ----- chunking -------------------------------------------------------------------------------------------------
def embed_chunks(model: Any, texts: list[str], chunking: Chunking, field: str = "input",
                 batch_size: int = 32) -> list[Any]:
    """`texts` run through the model's `encode_chunks` as `chunking` asks, in this thread: one ChunkedText per
    text. What it refuses becomes an ApiError naming the request's field (`chunking.overlap`, `input[2]` ...)."""
    from lightembed.chunking import ChunkingError

    try:
        result = model.encode_chunks(texts, chunk_size=chunking.chunk_size, overlap=chunking.overlap,
                                     late_chunking=chunking.mode == "late", batch_size=batch_size)
    except ChunkingError as exc:
        message = str(exc).replace("(late_chunking=False)", '(`chunking.mode` "windows")')
        if exc.field.startswith("inputs["):
            where = field + exc.field[len("inputs"):]
            raise PayloadTooLarge(None, message.replace(exc.field, f"`{where}`", 1), param=where) from None
        if exc.field == "late_chunking":
            raise BadRequest(None, f'`chunking.mode` "late": {message}', param="chunking.mode") from None
        raise InvalidField(None, f"`chunking`: {message}", param=f"chunking.{exc.field}") from None
    except (TypeError, ValueError) as exc:  # e.g. a lone surrogate, named by its input
        raise InvalidField(None, str(exc).replace("inputs[", f"{field}["), param=field) from None
    return list(result) if isinstance(result, list) else [result]


def chunk_entries(chunked: Any, dimensions: int | None, normalize: bool = True,
                  encoding_format: str = "float") -> list[dict[str, Any]]:
    """One text's chunks as the server sends them: {"embedding", "start", "end", "tokens"} each, in text order;
    text[start:end] is what the chunk covers, `tokens` its text tokens."""
    vectors = finish_embeddings(chunked.embeddings, dimensions, normalize)
    return [
        {"embedding": encode_vector(v, encoding_format), "start": int(start), "end": int(end), "tokens": int(n)}
        for v, (start, end), n in zip(vectors, chunked.offsets, chunked.token_counts)
    ]


def document_vectors(results: Sequence[Any], dimensions: int | None, normalize: bool = True) -> np.ndarray:
    """Each text's document vector (the token-weighted mean of its chunks), (texts, dim) after the request's
    truncation and normalization."""
    return finish_embeddings(np.stack([r.document_embedding for r in results]), dimensions, normalize)


def chunked_embeddings_response(request: EmbeddingsRequest, results: Sequence[Any]) -> dict[str, Any]:
    """The OpenAI response body of a request with `chunking`: `output` "document" is the usual one vector per
    input; "chunks" is one `data` entry per chunk, each a regular embedding entry whose `index` is its input's,
    with `chunk` (its place in the input), `start`, `end` and `tokens`; an input's chunks are consecutive.
    `usage` counts the chunks' text tokens."""
    assert request.chunking is not None
    tokens = sum(int(r.token_counts.sum()) for r in results)
    if request.chunking.output == "document":
        return embeddings_response(request, document_vectors(results, request.dimensions), tokens)
    data = [
        {"object": "embedding", "index": i, "chunk": k, **entry}
        for i, chunked in enumerate(results)
        for k, entry in enumerate(chunk_entries(chunked, request.dimensions, True, request.encoding_format))
    ]
    return {"object": "list", "data": data, "model": request.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def answer(request: EmbeddingsRequest, model: Any, batch_size: int = 32) -> dict[str, Any]:
    """Run `request` on `model` in this thread (with or without chunking) and build its OpenAI response body."""
    if request.chunking is None:
        vectors, tokens = embed(request, model, batch_size)
        return embeddings_response(request, vectors, tokens)
    results = embed_chunks(model, request.texts, request.chunking, "input", batch_size)
    check_finite([r.embeddings for r in results], request.model)
    return chunked_embeddings_response(request, results)
