"""A local Hugging Face Hub on 127.0.0.1, for `HF_ENDPOINT`: the endpoints `huggingface_hub` calls to resolve a
model at a revision and download its files (model info, the file tree, `resolve/<rev>/<file>` with the
headers the real Hub sends), serving folders made in a test. A gated repo answers 401 (`GatedRepo`) to
downloads without its token, a missing one 404 (`RepoNotFound`), a missing revision 404 (`RevisionNotFound`).
The real client code runs against it; nothing inside rejuv or huggingface_hub is mocked."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

LFS = (".safetensors", ".bin")


@dataclass
class Repo:
    refs: dict[str, str] = field(default_factory=dict)  # branch or tag → commit
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # commit → path → bytes
    token: str | None = None  # a gated repo: downloads need this token


class LocalHub:
    def __init__(self):
        self.repos: dict[str, Repo] = {}
        self.requests: list[str] = []  # "METHOD path", in order: what the client asked for
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add(self, repo_id: str, folder: str | Path | dict[str, bytes], revision: str = "main",
            token: str | None = None) -> str:
        """Publish `folder` (or name → bytes) as `revision` of `repo_id`; returns the commit."""
        files = folder if isinstance(folder, dict) else {
            p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}
        digest = hashlib.sha1(repo_id.encode())
        for name in sorted(files):
            digest.update(name.encode() + hashlib.sha1(files[name]).digest())
        commit = digest.hexdigest()
        repo = self.repos.setdefault(repo_id, Repo())
        repo.commits[commit] = dict(files)
        repo.refs[revision] = commit
        repo.token = token if token is not None else repo.token
        return commit

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _blob(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _handler(hub: LocalHub):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def _send(self, status: int, body: bytes = b"", headers: dict | None = None, head: bool = False) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, str(value))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _error(self, status: int, code: str, head: bool = False) -> None:
            self._send(status, json.dumps({"error": code}).encode(), {"X-Error-Code": code,
                                                                      "Content-Type": "application/json"}, head)

        def _commit(self, repo: Repo, revision: str) -> str | None:
            revision = unquote(revision)
            return repo.refs.get(revision) or (revision if revision in repo.commits else None)

        def _authorised(self, repo: Repo) -> bool:
            return repo.token is None or self.headers.get("authorization") == f"Bearer {repo.token}"

        def do_HEAD(self) -> None:  # noqa: N802
            self._route(head=True)

        def do_GET(self) -> None:  # noqa: N802
            self._route(head=False)

        def _route(self, head: bool) -> None:
            path = urlparse(self.path).path
            hub.requests.append(f"{self.command} {path}")
            api = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/(.+?))?", path)
            tree = re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)(?:/.*)?", path)
            resolve = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
            found = tree or api or resolve
            if found is None:
                return self._error(404, "EntryNotFound", head)
            repo = hub.repos.get(found.group(1))
            if repo is None:
                return self._error(404, "RepoNotFound", head)
            commit = self._commit(repo, found.group(2) or "main")
            if commit is None:
                return self._error(404, "RevisionNotFound", head)
            files = repo.commits[commit]
            if api and not tree:
                siblings = [{"rfilename": name, "size": len(data), "blobId": _blob(data)}
                            for name, data in sorted(files.items())]
                info = {"id": found.group(1), "modelId": found.group(1), "sha": commit, "siblings": siblings,
                        "private": False, "gated": "manual" if repo.token else False, "tags": [], "downloads": 0,
                        "likes": 0, "lastModified": "2026-12-01T00:00:00.000Z"}
                return self._send(200, json.dumps(info).encode(), {"Content-Type": "application/json"}, head)
            if tree:
                entries = []
                for name, data in sorted(files.items()):
                    entry = {"type": "file", "oid": _blob(data), "size": len(data), "path": name}
                    if name.endswith(LFS):
                        entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
                    entries.append(entry)
                return self._send(200, json.dumps(entries).encode(), {"Content-Type": "application/json"}, head)
            if not self._authorised(repo):
                return self._error(401, "GatedRepo", head)
            name = unquote(resolve.group(3))
            if name not in files:
                return self._error(404, "EntryNotFound", head)
            data = files[name]
            headers = {"X-Repo-Commit": commit, "ETag": f'"{_blob(data)}"', "Accept-Ranges": "bytes"}
            if name.endswith(LFS):
                headers.update({"X-Linked-Etag": f'"{hashlib.sha256(data).hexdigest()}"', "X-Linked-Size": len(data)})
            ranged = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("range") or "")
            if ranged and not head:
                start = int(ranged.group(1))
                stop = int(ranged.group(2)) + 1 if ranged.group(2) else len(data)
                headers["Content-Range"] = f"bytes {start}-{stop - 1}/{len(data)}"
                return self._send(206, data[start:stop], headers)
            self.send_response(200)
            for key, value in headers.items():
                self.send_header(key, str(value))
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if not head:
                self.wfile.write(data)

    return Handler
