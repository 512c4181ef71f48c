"""The server's OpenAPI 3.1 description (GET /openapi.json) and a static docs page built from it (GET /docs):
no JavaScript and nothing fetched from elsewhere, so it works on an offline host."""

from __future__ import annotations

import html
from typing import Any

_TEXTS = {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
_MODEL = {"type": "string", "description": "served model name (optional with one fitting model or --default-model)"}
_TRUNCATE = {
    "truncate": {"type": "boolean"},
    "truncation_direction": {"type": "string", "enum": ["Right", "Left"]},
}
_PROMPT = {"prompt_name": {"type": "string"}}
_CHUNKING = {"chunking": {
    "type": "object", "additionalProperties": False,
    "description": "embed each input whole, chunk by chunk, instead of cutting it at the model's max_seq_length: "
                   "per input a list of {embedding, start, end, tokens} (text[start:end] is the chunk; /v1/embeddings: "
                   "one data entry per chunk, with its input's index and `chunk`), or with output \"document\" one "
                   "token-weighted vector per input",
    "properties": {
        "chunk_size": {"type": "integer", "minimum": 1,
                       "description": "tokens per chunk, special tokens included (default: max_seq_length)"},
        "overlap": {"type": "integer", "minimum": 0, "description": "tokens consecutive chunks share (default 0)"},
        "mode": {"type": "string", "enum": ["windows", "late"],
                 "description": "windows: each chunk run on its own; late: the whole text run once (it must fit the "
                                "model's positions), each chunk the mean of its token embeddings"},
        "output": {"type": "string", "enum": ["chunks", "document"]},
    },
}}

# path -> (method, API, summary, request properties, required, response description)
ROUTES: dict[str, tuple[str, str, str, dict[str, Any], list[str], str]] = {
    "/v1/embeddings": ("post", "OpenAI", "Embeddings (OpenAI)", {
        "model": _MODEL, "input": _TEXTS, "encoding_format": {"type": "string", "enum": ["float", "base64"]},
        "dimensions": {"type": "integer", "minimum": 1}, "user": {"type": "string"}, **_CHUNKING,
    }, ["input"], "OpenAI's embeddings list (with chunking: one entry per chunk)"),
    "/v1/models": ("get", "OpenAI", "Served models", {}, [], "OpenAI's model list"),
    "/v1/rerank": ("post", "Cohere/Jina", "Rerank documents (Cohere v1 / Jina)", {
        "model": _MODEL, "query": {"type": "string"},
        "documents": {"type": "array", "items": {"oneOf": [{"type": "string"}, {"type": "object"}]}},
        "top_n": {"type": "integer", "minimum": 0}, "return_documents": {"type": "boolean"},
    }, ["query", "documents"], "results, best first"),
    "/v2/rerank": ("post", "Cohere", "Rerank documents (Cohere v2)", {
        "model": _MODEL, "query": {"type": "string"}, "documents": {"type": "array", "items": {"type": "string"}},
        "top_n": {"type": "integer", "minimum": 0},
    }, ["query", "documents"], "results, best first"),
    "/v2/embed": ("post", "Cohere", "Embeddings (Cohere v2)", {
        "model": _MODEL, "texts": {"type": "array", "items": {"type": "string"}},
        "input_type": {"type": "string", "enum": ["search_query", "search_document", "classification", "clustering"]},
        "embedding_types": {"type": "array", "items": {"type": "string",
                                                       "enum": ["float", "int8", "uint8", "binary", "ubinary",
                                                                "base64"]}},
        "output_dimension": {"type": "integer", "minimum": 1},
        "truncate": {"type": "string", "enum": ["NONE", "START", "END"]},
    }, ["texts"], "embeddings by type"),
    "/v1/multi-vector": ("post", "Jina", "Token vectors of a multi-vector (ColBERT) model (Jina)", {
        "model": _MODEL, "input": _TEXTS, "input_type": {"type": "string", "enum": ["query", "document"]},
        "embedding_type": {"type": "string", "enum": ["float", "base64"]}, "dimensions": {"type": "integer", "minimum": 1},
    }, ["input"], "per input, its token vectors (data[i].embeddings)"),
    "/embed": ("post", "TEI", "Sentence embeddings", {
        "model": _MODEL, "inputs": _TEXTS, "normalize": {"type": "boolean"}, "dimensions": {"type": "integer"},
        **_TRUNCATE, **_PROMPT, **_CHUNKING,
    }, ["inputs"], "one vector per input (with chunking: its chunks, or one document vector)"),
    "/embed_all": ("post", "TEI", "Token embeddings", {"model": _MODEL, "inputs": _TEXTS, **_TRUNCATE, **_PROMPT},
                   ["inputs"], "one vector per token, per input"),
    "/embed_sparse": ("post", "TEI", "Sparse embeddings", {"model": _MODEL, "inputs": _TEXTS, **_TRUNCATE, **_PROMPT},
                      ["inputs"], "[{index, value}] per input"),
    "/similarity": ("post", "TEI", "Cosine similarity of a sentence to others", {
        "model": _MODEL, "inputs": {"type": "object", "properties": {
            "source_sentence": {"type": "string"}, "sentences": {"type": "array", "items": {"type": "string"}}}},
        **_TRUNCATE, **_PROMPT,
    }, ["inputs"], "one score per sentence"),
    "/rerank": ("post", "TEI", "Rerank texts", {
        "model": _MODEL, "query": {"type": "string"}, "texts": {"type": "array", "items": {"type": "string"}},
        "raw_scores": {"type": "boolean"}, "return_text": {"type": "boolean"}, "truncate": {"type": "boolean"},
    }, ["query", "texts"], "[{index, score}], best first"),
    "/predict": ("post", "TEI", "Sequence classification", {
        "model": _MODEL, "inputs": {"description": "a text, a [text, text] pair, or a list of those"},
        "raw_scores": {"type": "boolean"}, "truncate": {"type": "boolean"},
    }, ["inputs"], "[{score, label}] per input, best first"),
    "/tokenize": ("post", "TEI", "Tokens of each input", {
        "model": _MODEL, "inputs": _TEXTS, "add_special_tokens": {"type": "boolean"}, **_PROMPT,
    }, ["inputs"], "[{id, text, special, start, stop}] per input"),
    "/decode": ("post", "TEI", "Text of token ids", {
        "model": _MODEL, "ids": {"type": "array"}, "skip_special_tokens": {"type": "boolean"},
    }, ["ids"], "one string per id list"),
    "/": ("post", "TEI", "The served model's own route (embed, or rerank for a query and texts)", {}, [],
          "as /embed or /rerank"),
    "/info": ("get", "TEI", "Model and server information", {}, [], "TEI's info object"),
    "/health": ("get", "TEI", "200 when ready, 503 while loading, draining or unhealthy", {}, [], "status"),
    "/metrics": ("get", "Prometheus", "Prometheus metrics", {}, [], "text format"),
    "/openapi.json": ("get", "lightembed", "This description", {}, [], "OpenAPI 3.1"),
    "/docs": ("get", "lightembed", "This description as a page", {}, [], "HTML"),
}


def spec(version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route."""
    error = {"description": "error: OpenAI's {error: {...}} on /v1/* and /v2/*, TEI's {error, error_type} elsewhere"}
    paths: dict[str, Any] = {}
    for path, (method, api, summary, props, required, answer) in ROUTES.items():
        operation: dict[str, Any] = {
            "summary": summary, "tags": [api],
            "responses": {"200": {"description": answer}, **({"4XX": error, "5XX": error} if method == "post" else {})},
        }
        if method == "post" and props:
            operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "properties": props, "required": required}}}}
        paths[path] = {method: operation}
    return {
        "openapi": "3.1.0",
        "info": {"title": "lightembed serve", "version": version,
                 "description": "OpenAI, TEI and Cohere/Jina compatible embedding, reranking, sparse and multi-vector routes."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": paths,
    }


def docs_page(document: dict[str, Any]) -> str:
    """A static HTML page listing every route of `document` with its request fields."""
    rows = []
    for path, methods in document["paths"].items():
        for method, op in methods.items():
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
            required = set(body.get("required", []))
            fields = ", ".join(
                f"<code>{html.escape(name)}</code>{'*' if name in required else ''}" for name in body.get("properties", {})
            )
            rows.append(f"<tr><td>{method.upper()}</td><td><code>{html.escape(path)}</code></td>"
                        f"<td>{html.escape(op['tags'][0])}</td><td>{html.escape(op['summary'])}</td><td>{fields}</td></tr>")
    title = html.escape(document["info"]["title"])
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head><body>"
        f"<h1>{title} {html.escape(document['info']['version'])}</h1>"
        "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a>. Fields marked * are required. "
        "Send bodies as <code>application/json</code>; with an API key, <code>Authorization: Bearer KEY</code>.</p>"
        "<table border='1' cellpadding='4'><tr><th>Method</th><th>Path</th><th>API</th><th>What</th><th>Fields</th></tr>"
        + "".join(rows) + "</table></body></html>"
    )
