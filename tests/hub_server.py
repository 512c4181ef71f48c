"""A stand-in for the Hugging Face Hub's HTTP API on 127.0.0.1, enough for huggingface_hub's snapshot_download.

It serves model repos held in memory at fixed commits: GET /api/models/{repo}[/revision/{rev}] (the repo's sha and
file list), GET /api/models/{repo}/tree/{rev} (its files, for
huggingface_hub >= 1), HEAD and GET /{repo}/resolve/{rev}/{path} (X-Repo-Commit, ETag, Content-Length, Range requests). Every
request is logged; `cut_once` makes the first GET of a file send half its bytes and close the connection, as a
dropped download would.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse


@dataclass
class Repo:
    """One repo: commit sha -> {path: bytes}, and branch name -> commit sha."""

    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)

    def add_commit(self, sha: str, folder: Path, branch: str | None = None) -> None:
        self.commits[sha] = {
            p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
        }
        if branch:
            self.refs[branch] = sha

    def resolve(self, revision: str) -> str | None:
        if revision in self.commits:
            return revision
        return self.refs.get(revision)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    range: str | None


class FakeHub:
    """The server; use as a context manager. `endpoint` is the value for HF_ENDPOINT."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.log: list[Request] = []
        self.cut_once: set[str] = set()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-hub", daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "FakeHub":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def downloads(self) -> list[str]:
        """Paths (repo-relative) fetched with GET, in order."""
        gets = [r.path for r in self.log if r.method == "GET" and "/resolve/" in r.path]
        return [path.split("/resolve/", 1)[1].split("/", 1)[1] for path in gets]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None, head: bool = False):
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

            def _json(self, status: int, data: object) -> None:
                self._send(status, json.dumps(data).encode(), {"Content-Type": "application/json"})

            def _not_found(self, what: str) -> None:
                self._send(404, json.dumps({"error": what}).encode(), {"X-Error-Code": "RepoNotFound"})

            def do_GET(self) -> None:
                self._serve(head=False)

            def do_HEAD(self) -> None:
                self._serve(head=True)

            def _serve(self, head: bool) -> None:
                path = unquote(urlparse(self.path).path)
                with hub._lock:
                    hub.log.append(Request(self.command, path, self.headers.get("Range")))
                tree = re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)(?:/.*)?", path)
                if tree:  # huggingface_hub >= 1 lists a snapshot's files through the tree API
                    return self._tree(*tree.groups())
                api = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/(.+))?", path)
                if api:
                    return self._info(api.group(1), api.group(2) or "main")
                resolve = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
                if resolve:
                    return self._file(*resolve.groups(), head=head)
                self._not_found(path)

            def _info(self, repo_id: str, revision: str) -> None:
                repo = hub.repos.get(repo_id)
                sha = repo.resolve(revision) if repo else None
                if sha is None:
                    return self._not_found(f"{repo_id}@{revision}")
                files = [{"rfilename": name} for name in repo.commits[sha]]
                self._json(200, {"id": repo_id, "modelId": repo_id, "sha": sha, "siblings": files, "private": False})

            def _tree(self, repo_id: str, revision: str) -> None:
                repo = hub.repos.get(repo_id)
                sha = repo.resolve(revision) if repo else None
                if sha is None:
                    return self._not_found(f"{repo_id}@{revision}")
                files = [
                    {"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                    for name, data in sorted(repo.commits[sha].items())
                ]
                self._json(200, files)

            def _file(self, repo_id: str, revision: str, name: str, head: bool) -> None:
                repo = hub.repos.get(repo_id)
                sha = repo.resolve(revision) if repo else None
                data = repo.commits[sha].get(name) if sha else None
                if data is None:
                    return self._send(404, b"", {"X-Error-Code": "EntryNotFound"}, head)
                etag = f'"{hashlib.sha256(data).hexdigest()}"'
                headers = {"X-Repo-Commit": sha, "ETag": etag, "Accept-Ranges": "bytes"}
                if head:
                    return self._send(200, data, headers, head=True)
                wanted = self.headers.get("Range")
                status, body = 200, data
                if wanted:
                    start = int(re.fullmatch(r"bytes=(\d+)-\d*", wanted).group(1))
                    status, body = 206, data[start:]
                    headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                key = f"{repo_id}/{name}"
                if key in hub.cut_once and not wanted:
                    hub.cut_once.discard(key)
                    self.send_response(200)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self._send(status, body, headers)

        return Handler
