"""The baselines lightembed's image and handlers are measured against: the same OpenAI embeddings endpoint and
Lambda handler a user would write on sentence-transformers (CPU torch) or on fastembed.

Only for deploy/build_and_test.py and benchmarks/serverless.py; lightembed itself never imports this.
BASELINE_BACKEND is `sentence-transformers` or `fastembed`; BASELINE_MODEL the model folder (a
sentence-transformers checkpoint for the first, an exported ONNX folder for fastembed, which cannot download
here: it is given the local folder and BASELINE_ONNX_FILE). The model is loaded at import, as Lambda's init does.

    python3 baseline_app.py serve            # Starlette on uvicorn, POST /v1/embeddings, GET /health on :8080
    python3 baseline_app.py encode TEXT ...  # JSON vectors on stdout
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

BACKEND = os.environ.get("BASELINE_BACKEND", "sentence-transformers")
MODEL = os.environ.get("BASELINE_MODEL", "/opt/model")
ONNX_FILE = os.environ.get("BASELINE_ONNX_FILE", "onnx/model.onnx")


def load() -> Callable[[list[str]], np.ndarray]:
    """An encode function for BACKEND's model: texts -> (n, dim) L2-normalized float32."""
    if BACKEND == "sentence-transformers":
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(MODEL, device="cpu")
        return lambda texts: model.encode(texts, batch_size=32, normalize_embeddings=True)
    if BACKEND == "fastembed":
        from fastembed import TextEmbedding
        from fastembed.common.model_description import ModelSource, PoolingType

        name = "local/" + Path(MODEL).name
        dim = json.loads((Path(MODEL) / "config.json").read_text())["hidden_size"]
        TextEmbedding.add_custom_model(model=name, pooling=PoolingType.MEAN, normalization=True,
                                       sources=ModelSource(hf=name), dim=dim, model_file=ONNX_FILE)
        model = TextEmbedding(name, specific_model_path=MODEL, local_files_only=True,
                              providers=["CPUExecutionProvider"])
        return lambda texts: np.stack(list(model.embed(texts, batch_size=32))).astype(np.float32)
    raise ValueError(f"BASELINE_BACKEND must be sentence-transformers or fastembed, got {BACKEND!r}")


ENCODE = load()


def respond(raw: bytes | str) -> tuple[int, dict[str, Any]]:
    """An OpenAI embeddings request body -> (status, OpenAI embeddings body or an error body)."""
    try:
        body = json.loads(raw)
        texts = body["input"]
        texts = [texts] if isinstance(texts, str) else texts
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise ValueError("`input` must be a string or a non-empty list of strings")
    except (ValueError, KeyError, TypeError) as exc:
        return 400, {"error": {"message": f"bad request: {exc}", "type": "invalid_request_error"}}
    vectors = ENCODE(texts)
    data = [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)]
    return 200, {"object": "list", "data": data, "model": body.get("model", "model"), "usage": {}}


def lambda_handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """API Gateway / Function URL proxy handler."""
    status, body = respond(event.get("body") or "")
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}


def serve() -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def embeddings(request: Request) -> JSONResponse:
        status, body = respond(await request.body())
        return JSONResponse(body, status_code=status)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    app = Starlette(routes=[Route("/v1/embeddings", embeddings, methods=["POST"]), Route("/health", health)])
    uvicorn.run(app, host=os.environ.get("HOST", "0.0.0.0"), port=int(os.environ.get("PORT", "8080")),
                log_level="warning")


if __name__ == "__main__":
    if sys.argv[1:2] == ["encode"]:
        print(json.dumps(ENCODE(sys.argv[2:]).tolist()))
    else:
        serve()
