"""`lightembed serve`: embeddings, reranking and sparse vectors over HTTP (the `lightembed[server]` extra).

`lightembed.server.protocol` is framework-free (the serverless handlers use it too); the app itself
(`lightembed.server.app`) needs Starlette and uvicorn: pip install "lightembed[server]".
"""

from __future__ import annotations

SERVER_EXTRA_MISSING = (
    'lightembed serve needs the server extra (Starlette and uvicorn): pip install "lightembed[server]"'
)
