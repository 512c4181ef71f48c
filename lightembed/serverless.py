"""Serverless entry points: an AWS Lambda handler and a Google Cloud Functions (functions-framework) function that
answer OpenAI embeddings requests (`POST /v1/embeddings` bodies) with OpenAI's embeddings JSON.

Configure with environment variables: `LIGHTEMBED_MODEL` (an exported model folder or Hub repo id, required),
`LIGHTEMBED_FILE_NAME` (the ONNX file, e.g. `onnx/model_qint8_avx512_vnni.onnx`), `LIGHTEMBED_MODEL_NAME` (the
name clients send as `model`; default: the folder's name or the repo id) and `LIGHTEMBED_THREADS`.
The model is loaded once, when this module is imported: in Lambda's init phase, or when functions-framework
loads the source.

- AWS Lambda: handler `lightembed.serverless.lambda_handler`, for API Gateway REST (v1) and HTTP API (v2) proxy
  events and Function URL events. An event that is itself an embeddings request (a direct `Invoke`) gets the
  response body back as a dict.
- Cloud Functions: `functions-framework --source main.py --target embeddings` with `main.py` holding
  `from lightembed.serverless import cloud_function as embeddings`.

Requests are parsed, run and answered by `lightembed.server.protocol`, the same code `lightembed serve` uses (so
`chunking`, for inputs longer than the model, works here too).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Mapping

from lightembed.errors import LightembedValueError, NonFiniteOutput, kind
from lightembed.server import protocol

__all__ = ["lambda_handler", "cloud_function", "respond", "load", "handle_event"]

_JSON = {"Content-Type": "application/json"}
_models: dict[str, Any] | None = None
_load_error: protocol.ApiError | None = None


def served_name(model: str) -> str:
    """The name clients use for `model`: LIGHTEMBED_MODEL_NAME, else a local folder's name, else the repo id."""
    explicit = os.environ.get("LIGHTEMBED_MODEL_NAME")
    if explicit:
        return explicit
    path = Path(model)
    return path.resolve().name if path.exists() else model


def load(model: str | None = None, file_name: str | None = None) -> dict[str, Any]:
    """Load the model named by `model` (default: env LIGHTEMBED_MODEL) and serve it from now on; returns
    {served name: model}."""
    global _models, _load_error
    from lightembed.encoder import SentenceTransformer

    model = model or os.environ.get("LIGHTEMBED_MODEL")
    if not model:
        raise LightembedValueError("Set LIGHTEMBED_MODEL to an exported model folder (or a Hub repo id) to serve.")
    threads = os.environ.get("LIGHTEMBED_THREADS")
    loaded = SentenceTransformer(
        model,
        device="cpu",
        file_name=file_name or os.environ.get("LIGHTEMBED_FILE_NAME") or None,
        threads=int(threads) if threads else None,
    )
    _models, _load_error = {served_name(model): loaded}, None
    return _models


def _init() -> None:
    """Load at import when configured; a failure is logged once and answered as 503 JSON on every request."""
    global _load_error
    if not os.environ.get("LIGHTEMBED_MODEL"):
        _load_error = protocol.Unavailable("LIGHTEMBED_MODEL is not set: no model to serve.")
        return
    try:
        load()
    except Exception as exc:  # noqa: BLE001 - any load failure must become a clean answer, not a crashed runtime
        print(f"lightembed.serverless: could not load {os.environ['LIGHTEMBED_MODEL']!r}:", file=sys.stderr)
        traceback.print_exc()
        _load_error = protocol.Unavailable(f"The model could not be loaded: {kind(exc)}: {exc}")


def respond(raw: bytes | str | Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
    """One embeddings request (raw body bytes, or the already-decoded JSON object) -> (HTTP status, JSON body)."""
    try:
        if _models is None:
            raise _load_error or protocol.Unavailable("No model is loaded.")
        if isinstance(raw, Mapping):
            body = dict(raw)
        elif isinstance(raw, str):
            if len(raw) > protocol.Limits().max_body_bytes:  # characters, a lower bound of the bytes
                raise protocol.PayloadTooLarge(f"The request body is over {protocol.Limits().max_body_bytes} bytes.")
            body = protocol.read_json(raw.encode("utf-8", "surrogatepass"))
        else:
            body = protocol.read_json(raw)
        request = protocol.parse_embeddings_request(body, _models)
        return 200, protocol.answer(request, _models[request.model])
    except protocol.ApiError as exc:
        return exc.status, exc.openai_body()
    except NonFiniteOutput as exc:  # damaged weights: an error, never a vector
        return 500, protocol.NonFinite(None, str(exc)).openai_body()
    except Exception:  # noqa: BLE001 - the client gets a JSON 500, the traceback goes to the function's log only
        traceback.print_exc()
        return 500, protocol.ApiError(500, "Internal error while embedding; see the function's log.").openai_body()


def _http_event(event: Mapping[str, Any]) -> bool:
    return any(key in event for key in ("httpMethod", "requestContext", "rawPath", "routeKey", "body"))


def _method(event: Mapping[str, Any]) -> str:
    """The HTTP method; BadRequest when the event's requestContext is not the shape API Gateway sends."""
    if "httpMethod" in event:  # API Gateway REST (v1)
        return str(event["httpMethod"]).upper()
    context = event.get("requestContext")
    if context is None:
        return "POST"
    http = context.get("http") if isinstance(context, Mapping) else None  # HTTP API (v2) and Function URLs
    if not isinstance(context, Mapping) or not isinstance(http, (Mapping, type(None))):
        raise protocol.BadRequest(
            "The event's `requestContext` is not an object with an `http` object, as API Gateway and Function "
            "URLs send it."
        )
    method = (http or {}).get("method") or "POST"
    if not isinstance(method, str):
        raise protocol.BadRequest(f"The event's `requestContext.http.method` must be a string, got {method!r}.")
    return method.upper()


def _is_base64(event: Mapping[str, Any]) -> bool:
    """`isBase64Encoded`: a boolean, or "true"/"false" as some proxies write it."""
    flag = event.get("isBase64Encoded", False)
    if isinstance(flag, str) and flag.strip().lower() in ("true", "false"):
        return flag.strip().lower() == "true"
    if isinstance(flag, bool) or flag is None:
        return bool(flag)
    raise protocol.BadRequest(f"The event's `isBase64Encoded` must be true or false, got {flag!r}.")


def _body(event: Mapping[str, Any]) -> bytes | str:
    body = event.get("body")
    if body is None:
        raise protocol.BadRequest("The event has no body: send an OpenAI embeddings request as the POST body.")
    if not isinstance(body, str):
        raise protocol.BadRequest(f"The event's body must be a string, got {type(body).__name__}.")
    if _is_base64(event):
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise protocol.BadRequest("The event says its body is base64 but it is not valid base64.") from None
    return body  # text, parsed as it is: a raw lone surrogate in it is named by the tokenizer, not an encode error


def handle_event(event: Any) -> tuple[int, dict[str, Any]]:
    """A Lambda event (HTTP proxy event or a bare embeddings request) -> (status, JSON body)."""
    if not isinstance(event, Mapping):
        return 400, protocol.BadRequest(
            f"The event must be a JSON object (an HTTP event or an embeddings request), got {type(event).__name__}."
        ).openai_body()
    if not _http_event(event):
        return respond(event)
    try:
        method = _method(event)
    except protocol.ApiError as exc:
        return exc.status, exc.openai_body()
    if method == "GET":
        if _models is None:
            error = _load_error or protocol.Unavailable("No model is loaded.")
            return error.status, error.openai_body()
        return 200, {"status": "ok", "models": sorted(_models)}
    if method != "POST":
        return 405, protocol.ApiError(405, f"{method} is not allowed: POST an embeddings request.",
                                      "invalid_request_error").openai_body()
    try:
        raw = _body(event)
    except protocol.ApiError as exc:
        return exc.status, exc.openai_body()
    return respond(raw)


def lambda_handler(event: Any, context: Any = None) -> dict[str, Any]:
    """AWS Lambda handler: an API Gateway v1/v2 or Function URL proxy response, or for a direct invocation whose
    event is the embeddings request, the response body itself."""
    status, body = handle_event(event)
    if isinstance(event, Mapping) and not _http_event(event):
        return body
    return {"statusCode": status, "headers": dict(_JSON), "body": json.dumps(body), "isBase64Encoded": False}


def cloud_function(request: Any) -> tuple[str, int, dict[str, str]]:
    """Google Cloud Functions / functions-framework HTTP function (`request` is a flask.Request)."""
    if request.method == "GET":
        status, body = handle_event({"httpMethod": "GET"})
    elif request.method != "POST":
        status, body = handle_event({"httpMethod": request.method})
    else:
        status, body = respond(request.get_data(cache=False))
    return json.dumps(body), status, dict(_JSON)


_init()
