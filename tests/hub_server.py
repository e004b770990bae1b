"""A loopback Hugging Face Hub for tests.

`LocalHub` serves, over real HTTP on 127.0.0.1 (stdlib `ThreadingHTTPServer` in a background thread), the part of the
Hub's protocol that huggingface_hub 2.x and transformers use to create repos, push commits and download files:
`create_repo`, `create_commit` / `upload_folder` / `upload_file` / `push_to_hub` (models and `Trainer`),
`hf_hub_download`, `snapshot_download`, `list_repo_files` / `list_repo_tree`, `repo_info`, branches, tags, refs,
commit history and `from_pretrained`. Repos live in memory; every commit is an immutable snapshot with its own
40-hex sha, so any revision (branch, tag, `refs/pr/N`, full or short sha) can be downloaded.

The client reads `HF_ENDPOINT` (and the cache paths) once, when huggingface_hub is imported, so a conftest must call
`reserve_endpoint()` before anything imports huggingface_hub or transformers; `get_hub()` then starts the server
lazily on the reserved port (from a session fixture). Deliberate simplifications: no auth (any token is accepted),
no LFS/Xet (preupload answers "regular" for every file, so contents travel base64-encoded in the commit NDJSON),
no pagination (one page holds everything).
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import itertools
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

USER = "user"  # the namespace `whoami` reports, used when a repo id has no namespace
TOKEN = "hf_local_test"
_PORT_VAR = "LOCAL_HUB_PORT"  # "{pid}:{port}" set by reserve_endpoint(), so that it is idempotent per process

# What the Hub puts in the `.gitattributes` of a new repo's initial commit.
_GITATTRIBUTES = b"*.bin filter=lfs diff=lfs merge=lfs -text\n*.safetensors filter=lfs diff=lfs merge=lfs -text\n"


def reserve_endpoint() -> int:
    """Point huggingface_hub at a free loopback port and at a throwaway cache; return the port.

    Must run before huggingface_hub is imported (it reads these variables at import time). Idempotent: a second call
    in the same process (e.g. from a test module after the conftest) returns the port already reserved. Subprocesses
    inherit the variables, so a CLI run from a test talks to the same hub; a child that calls this again (a pytest-xdist
    worker) gets a port and hub of its own.
    """
    pid, _, port = os.environ.get(_PORT_VAR, "").partition(":")
    if pid == str(os.getpid()):
        return int(port)
    if "huggingface_hub" in sys.modules:
        raise RuntimeError(
            "huggingface_hub was imported before reserve_endpoint(): it already read HF_ENDPOINT. "
            "Call reserve_endpoint() at the top of tests/conftest.py."
        )
    with socket.socket() as s:  # the OS picks a free port; LocalHub binds it again later (SO_REUSEADDR)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    home = tempfile.mkdtemp(prefix="hf-home-")
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    no_proxy = ",".join(filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1,localhost"]))
    os.environ.update(
        HF_ENDPOINT=f"http://127.0.0.1:{port}",
        **{_PORT_VAR: f"{os.getpid()}:{port}"},
        # Never read or write the user's cache or token; HF_HUB_CACHE etc. would win over HF_HOME if set.
        HF_HOME=home,
        HF_HUB_CACHE=os.path.join(home, "hub"),
        HF_ASSETS_CACHE=os.path.join(home, "assets"),
        HF_XET_CACHE=os.path.join(home, "xet"),
        HF_TOKEN=TOKEN,  # `whoami` refuses to run without a token; any value works here
        HF_HUB_OFFLINE="0",
        TRANSFORMERS_OFFLINE="0",
        HF_HUB_DISABLE_TELEMETRY="1",
        # With hf_xet installed, upload_folder would take the Xet pipeline; this keeps the plain commit path.
        HF_HUB_DISABLE_XET="1",
        NO_PROXY=no_proxy,  # httpx honours *_PROXY variables; loopback must bypass them
        no_proxy=no_proxy,
    )
    return port


_HUB: LocalHub | None = None


def get_hub() -> LocalHub:
    """The process-wide LocalHub on the port reserved by `reserve_endpoint()`, started on first use."""
    global _HUB
    if _HUB is None:
        _HUB = LocalHub(port=reserve_endpoint()).start()
        atexit.register(_HUB.stop)
    return _HUB


def git_hash(data: bytes) -> str:
    """Git blob sha1: what the Hub uses as ETag / oid of regular files, and what the client compares against."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Blob(NamedTuple):
    oid: str
    data: bytes


@dataclass(frozen=True)
class Commit:
    oid: str
    parent: str | None
    files: dict[str, Blob]  # full snapshot of the tree; never mutated
    title: str
    message: str
    date: str


@dataclass
class Repo:
    repo_id: str
    repo_type: str
    private: bool
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)  # name -> commit oid
    tags: dict[str, str] = field(default_factory=dict)
    prs: dict[str, str] = field(default_factory=dict)  # "refs/pr/N" -> commit oid

    def resolve(self, rev: str) -> Commit | None:
        rev = rev.removeprefix("refs/heads/").removeprefix("refs/tags/")
        oid = self.branches.get(rev) or self.tags.get(rev) or self.prs.get(rev)
        if oid is None and re.fullmatch(r"[0-9a-f]{5,40}", rev):  # full or short sha (client allows 5+ hex)
            oid = next((o for o in self.commits if o.startswith(rev)), None)
        return self.commits.get(oid) if oid else None


class Request(NamedTuple):
    query: dict[str, list[str]]
    headers: Any  # email.message.Message from http.server
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"{}")

    def flag(self, name: str) -> bool:
        return self.query.get(name, ["false"])[-1].lower() in ("1", "true")


Response = tuple[int, dict[str, str], bytes]


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(obj).encode()


class HubError(Exception):
    """Raised by endpoints; becomes an error response the client maps to its exception classes."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        # `X-Error-Code` selects the client's exception (RepoNotFound, RevisionNotFound, EntryNotFound); the message
        # (header and JSON `error`) ends up in the exception text. Headers must be one line of latin-1.
        header = message.encode("ascii", "backslashreplace").decode().replace("\n", " ")
        extra = {"X-Error-Message": header, **({"X-Error-Code": code} if code else {}), **(headers or {})}
        self.response = _json({"error": message}, status, extra)


_API = r"/api/(?P<type>model|dataset|space|kernel)s/(?P<repo>[^/]+/[^/]+)"
# (method, path regex, LocalHub method). Paths are matched still percent-encoded: the client quotes revisions with
# safe="" (so "refs/pr/1" is one segment) and tree paths likewise; the groups are unquoted afterwards.
_ROUTES = [
    ("GET", r"/api/whoami-v2", "whoami"),
    ("POST", r"/api/validate-yaml", "validate_yaml"),
    ("POST", r"/api/repos/create", "create_repo"),
    ("DELETE", r"/api/repos/delete", "delete_repo"),
    ("GET", rf"{_API}(?:/revision/(?P<rev>[^/]+))?", "repo_info"),
    ("GET", rf"{_API}/refs", "refs"),
    ("GET", rf"{_API}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?", "tree"),
    ("POST", rf"{_API}/paths-info/(?P<rev>[^/]+)", "paths_info"),
    ("POST", rf"{_API}/preupload/(?P<rev>[^/]+)", "preupload"),
    ("POST", rf"{_API}/commit/(?P<rev>[^/]+)", "commit"),
    ("GET", rf"{_API}/commits/(?P<rev>[^/]+)", "commits"),
    ("POST", rf"{_API}/branch/(?P<rev>[^/]+)", "create_branch"),
    ("DELETE", rf"{_API}/branch/(?P<rev>[^/]+)", "delete_branch"),
    ("POST", rf"{_API}/tag/(?P<rev>[^/]+)", "create_tag"),
    # Downloads: /{ns}/{name}/resolve/{rev}/{path} for models, /{type}s/{ns}/{name}/resolve/... for the others.
    (
        "GET",
        r"/(?:(?P<type>dataset|space|kernel)s/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)",
        "resolve",
    ),
]


class LocalHub:
    """In-memory Hub served on http://127.0.0.1:{port}: `start()`, `stop()`, `url`, `port`, `repos`, `log`."""

    def __init__(self, port: int = 0):
        self.port = port
        self.repos: dict[tuple[str, str], Repo] = {}  # (repo_type, "ns/name") -> Repo
        self.log: list[tuple[str, str, int]] = []  # (method, path, status) of every request, to debug tests
        self.lock = threading.Lock()  # the server runs requests on many threads; each endpoint holds this lock
        self._server: ThreadingHTTPServer | None = None
        self._counter = itertools.count()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LocalHub:
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), _Handler)
        self._server.daemon_threads = True  # idle keep-alive connections must not block interpreter exit
        self._server.hub = self  # type: ignore[attr-defined]
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, name="local-hub", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def reset(self) -> None:
        """Forget all repos (for tests that need a clean hub)."""
        with self.lock:
            self.repos.clear()

    def handle(self, method: str, path: str, req: Request) -> Response:
        for route_method, pattern, name in _ROUTES:
            if route_method == method and (m := re.fullmatch(pattern, path)):
                kwargs = {k: v and unquote(v) for k, v in m.groupdict().items()}
                try:
                    with self.lock:
                        return getattr(self, name)(req, **kwargs)
                except HubError as e:
                    return e.response
                except Exception as e:  # noqa: BLE001 - a bug here should reach the test as a readable 500, not a dropped socket
                    return HubError(500, f"LocalHub.{name} failed: {e!r}\n{traceback.format_exc()}").response
        return HubError(404, f"LocalHub has no route for {method} {path}").response

    # -- helpers -----------------------------------------------------------------------------------------------------

    def _repo_url(self, repo: Repo) -> str:
        prefix = "" if repo.repo_type == "model" else f"{repo.repo_type}s/"
        return f"{self.url}/{prefix}{repo.repo_id}"

    def _repo_key(self, body: dict) -> tuple[str, str]:
        # create_repo("tiny") sends no organization: like the Hub, put it under the caller's namespace.
        return body.get("type") or "model", f"{body.get('organization') or USER}/{body['name']}"

    def _lookup(self, type: str | None, repo: str, rev: str | None = None) -> tuple[Repo, Commit]:
        found = self.repos.get((type or "model", repo))
        if found is None:
            raise HubError(404, f"Repository {repo} not found", "RepoNotFound")
        commit = found.resolve(rev or "main")
        if commit is None:
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return found, commit

    def _new_commit(self, repo: Repo, parent: Commit | None, files: dict[str, Blob], title: str, msg: str) -> Commit:
        # Any unique 40-hex string serves as a sha; the counter gives identical trees distinct commits.
        seed = f"{repo.repo_id}\n{parent and parent.oid}\n{sorted((p, b.oid) for p, b in files.items())}\n{title}"
        oid = hashlib.sha1(f"{seed}\n{next(self._counter)}".encode()).hexdigest()
        date = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        repo.commits[oid] = Commit(oid, parent and parent.oid, files, title, msg, date)
        return repo.commits[oid]

    @staticmethod
    def _file_entry(path: str, blob: Blob) -> dict:
        return {"type": "file", "oid": blob.oid, "size": len(blob.data), "path": path}

    @staticmethod
    def _dir_entry(path: str, commit: Commit) -> dict:
        oid = hashlib.sha1(f"{commit.oid}:{path}".encode()).hexdigest()
        return {"type": "directory", "oid": oid, "size": 0, "path": path}

    # -- endpoints: called under self.lock with the unquoted route groups ---------------------------------------------

    def whoami(self, req: Request) -> Response:
        auth = {"type": "access_token", "accessToken": {"displayName": "local", "role": "write"}}
        return _json({"type": "user", "id": "0", "name": USER, "fullname": "Local User", "orgs": [], "auth": auth})

    def validate_yaml(self, req: Request) -> Response:  # called for every README.md (model card) in a commit
        return _json({"errors": [], "warnings": []})

    def create_repo(self, req: Request) -> Response:
        key = self._repo_key(req.json())
        if key in self.repos:  # create_repo(exist_ok=True) swallows this 409, then reads `url` from its body
            return _json({"error": "You already created this repo", "url": self._repo_url(self.repos[key])}, 409)
        repo = self.repos[key] = Repo(key[1], key[0], private=req.json().get("visibility") == "private")
        # The Hub seeds new repos with a `.gitattributes` in an "initial commit"; mirror it so listings look real.
        files = {".gitattributes": Blob(git_hash(_GITATTRIBUTES), _GITATTRIBUTES)}
        repo.branches["main"] = self._new_commit(repo, None, files, "initial commit", "").oid
        # The client takes the repo id (namespace included) from this url.
        return _json({"url": self._repo_url(repo), "name": repo.repo_id, "id": repo.repo_id})

    def delete_repo(self, req: Request) -> Response:
        key = self._repo_key(req.json())
        if self.repos.pop(key, None) is None:
            raise HubError(404, f"Repository {key[1]} not found", "RepoNotFound")
        return _json({})

    def repo_info(self, req: Request, type: str, repo: str, rev: str | None) -> Response:
        r, c = self._lookup(type, repo, rev)
        siblings = [{"rfilename": p, "size": len(b.data), "blobId": b.oid} for p, b in sorted(c.files.items())]
        created = next(iter(r.commits.values())).date
        return _json(
            {
                "id": repo,
                "modelId": repo,
                "author": repo.split("/")[0],
                "sha": c.oid,
                "private": r.private,
                "gated": False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "lastModified": c.date,
                "createdAt": created,
                "siblings": siblings,
            }
        )

    def refs(self, req: Request, type: str, repo: str) -> Response:
        r, _ = self._lookup(type, repo)

        def listing(refs: dict[str, str], kind: str | None) -> list[dict]:
            return [{"name": n, "ref": f"refs/{kind}/{n}" if kind else n, "targetCommit": o} for n, o in refs.items()]

        return _json(
            {
                "branches": listing(r.branches, "heads"),
                "tags": listing(r.tags, "tags"),
                "converts": [],
                "pullRequests": listing(r.prs, None) if req.flag("include_prs") else [],
            }
        )

    def tree(self, req: Request, type: str, repo: str, rev: str, path: str | None) -> Response:
        _, commit = self._lookup(type, repo, rev)
        recursive, base = req.flag("recursive"), (path or "").strip("/")
        base = base + "/" if base else ""
        entries: dict[str, dict] = {}  # one page with everything: no `Link` header, so the client stops here
        for p, blob in sorted(commit.files.items()):
            if not p.startswith(base):
                continue
            parts = p[len(base) :].split("/")
            for i in range(1, len(parts) if recursive else min(2, len(parts))):  # folders on the way down
                folder = base + "/".join(parts[:i])
                entries.setdefault(folder, self._dir_entry(folder, commit))
            if recursive or len(parts) == 1:
                entries[p] = self._file_entry(p, blob)
        if base and not entries:
            raise HubError(404, f"{path} does not exist on {rev}", "EntryNotFound", {"X-Repo-Commit": commit.oid})
        return _json(list(entries.values()))

    def paths_info(self, req: Request, type: str, repo: str, rev: str) -> Response:
        _, commit = self._lookup(type, repo, rev)
        # The client posts a form (paths=a&paths=b&expand=False), not JSON; accept both.
        body = req.json() if req.body[:1] == b"{" else parse_qs(req.body.decode())
        out = []
        for p in body.get("paths", []):
            if p in commit.files:
                out.append(self._file_entry(p, commit.files[p]))
            elif any(f.startswith(p.rstrip("/") + "/") for f in commit.files):
                out.append(self._dir_entry(p.rstrip("/"), commit))
        return _json(out)

    def preupload(self, req: Request, type: str, repo: str, rev: str) -> Response:
        _, commit = self._lookup(type, repo, rev)
        # "regular" keeps every upload inline, base64 in the commit call (no LFS/Xet). `oid` (git sha1 of the current
        # content) lets the client drop unchanged files; `shouldIgnore` is required by the client.
        files = [f["path"] for f in req.json()["files"]]
        blobs = {p: commit.files.get(p) for p in files}
        return _json(
            {
                "files": [
                    {
                        "path": p,
                        "uploadMode": "regular",
                        "shouldIgnore": False,
                        "oid": blobs[p].oid if blobs[p] else None,
                    }
                    for p in files
                ]
            }
        )

    def commit(self, req: Request, type: str, repo: str, rev: str) -> Response:
        r, head = self._lookup(type, repo, rev)
        lines = [json.loads(line) for line in req.body.splitlines() if line.strip()]
        header = next((line["value"] for line in lines if line["key"] == "header"), {})
        parent, create_pr = header.get("parentCommit"), req.flag("create_pr")
        if create_pr:  # the PR branches off `parentCommit` if given, else off the head of `rev`
            head = r.resolve(parent) if parent else head
            if head is None:
                raise HubError(404, f"Invalid parent commit {parent}", "RevisionNotFound")
        elif rev not in r.branches and rev not in r.prs:
            raise HubError(400, f"Can only commit to a branch or a pull request ref, not {rev}")
        elif parent and not head.oid.startswith(parent):
            raise HubError(412, "A commit has happened since. Please refresh and try again.")
        files = dict(head.files)
        for line in lines:
            key, value = line["key"], line["value"]
            if key == "file":
                content = value["content"]
                data = base64.b64decode(content) if value.get("encoding") == "base64" else content.encode()
                files[value["path"]] = Blob(git_hash(data), data)
            elif key in ("deletedFile", "deletedFolder"):
                folder = value["path"].rstrip("/") + "/"
                doomed = [p for p in files if (p.startswith(folder) if key == "deletedFolder" else p == value["path"])]
                if not doomed:  # the client looks for this wording to add a hint about folders
                    raise HubError(404, f"A file with this name doesn't exist: {value['path']}", "EntryNotFound")
                for p in doomed:
                    del files[p]
            elif key != "header":  # lfsFile: never expected, as preupload always answers "regular"
                raise HubError(400, f"LocalHub does not support commit operation {key!r}")
        commit = self._new_commit(r, head, files, header.get("summary", ""), header.get("description", ""))
        pr_url = None
        if create_pr:
            num = len(r.prs) + 1
            r.prs[f"refs/pr/{num}"] = commit.oid
            pr_url = f"{self._repo_url(r)}/discussions/{num}"  # the client derives refs/pr/{num} from this url
        else:
            (r.prs if rev in r.prs else r.branches)[rev] = commit.oid
        return _json(
            {
                "success": True,
                "commitOid": commit.oid,
                "commitUrl": f"{self._repo_url(r)}/commit/{commit.oid}",
                "pullRequestUrl": pr_url,
                "hookOutput": "",
            }
        )

    def commits(self, req: Request, type: str, repo: str, rev: str) -> Response:
        r, c = self._lookup(type, repo, rev)
        out = []
        while c is not None:
            authors = [{"user": USER}]
            out.append({"id": c.oid, "title": c.title, "message": c.message, "date": c.date, "authors": authors})
            c = r.commits.get(c.parent) if c.parent else None
        return _json(out)

    def create_branch(self, req: Request, type: str, repo: str, rev: str) -> Response:
        r, start = self._lookup(type, repo, req.json().get("startingPoint"))
        if rev in r.branches:  # create_branch(exist_ok=True), used by push_to_hub(revision=...), swallows this 409
            raise HubError(409, f"Branch {rev} already exists")
        r.branches[rev] = start.oid
        return _json({})

    def delete_branch(self, req: Request, type: str, repo: str, rev: str) -> Response:
        r, _ = self._lookup(type, repo)
        if r.branches.pop(rev, None) is None:
            raise HubError(404, f"Branch {rev} not found", "RevisionNotFound")
        return _json({})

    def create_tag(self, req: Request, type: str, repo: str, rev: str) -> Response:
        r, c = self._lookup(type, repo, rev)
        tag = req.json()["tag"]
        if tag in r.tags:
            raise HubError(409, f"Tag {tag} already exists")
        r.tags[tag] = c.oid
        return _json({})

    def resolve(self, req: Request, type: str | None, repo: str, rev: str, path: str) -> Response:
        _, commit = self._lookup(type, repo, rev)
        headers = {"X-Repo-Commit": commit.oid}  # on 404s too: the client caches "absent at this commit"
        blob = commit.files.get(path)
        if blob is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", headers)
        # hf_hub_download's HEAD call requires X-Repo-Commit and an ETag (the git sha1 for a regular file).
        headers |= {"ETag": f'"{blob.oid}"', "Content-Type": "application/octet-stream", "Accept-Ranges": "bytes"}
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", req.headers.get("Range", ""))
        if m:  # interrupted downloads resume with a Range request
            start, end = int(m[1]), min(int(m[2] or len(blob.data) - 1), len(blob.data) - 1)
            headers["Content-Range"] = f"bytes {start}-{end}/{len(blob.data)}"
            return 206, headers, blob.data[start : end + 1]
        return 200, headers, blob.data


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client pools connections (needs exact Content-Length)
    disable_nagle_algorithm = True  # headers and body go out as separate writes: avoid a 40 ms delayed-ACK stall each

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean; LocalHub.log has it all
        pass

    def do_GET(self) -> None:
        hub: LocalHub = self.server.hub  # type: ignore[attr-defined]
        url = urlsplit(self.path)
        req = Request(parse_qs(url.query), self.headers, self._read_body())
        # HEAD is GET without a body (Content-Length stays that of the GET: the client reads the size from it).
        status, headers, body = hub.handle("GET" if self.command == "HEAD" else self.command, url.path, req)
        hub.log.append((self.command, self.path, status))
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_HEAD = do_POST = do_PUT = do_DELETE = do_GET

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":  # httpx streams generators this way
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))
