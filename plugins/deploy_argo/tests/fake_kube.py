"""A small fake of the Kubernetes API server, for Argo's custom objects only (the tests' one mock).

It keeps objects in memory per (plural, namespace, name), fills in what the API server would
(``name`` from ``generateName``, ``resourceVersion``, ``uid``, ``creationTimestamp``), answers
404 / 409 like the real one, filters lists by a ``key=value`` label selector, applies merge
patches, and records every request (method, path, query, body) so a test can assert exactly what
was created, listed and deleted.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

PATH = re.compile(
    r"^/apis/argoproj\.io/v1alpha1/namespaces/(?P<ns>[^/]+)/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?$"
)


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value
    return target


class FakeKube:
    """Start with :meth:`start`; ``url`` is where it listens; ``requests`` what it received."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._version = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _body(self) -> Any:
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length)) if length else None

            def _handle(self, method: str) -> None:
                url = urlparse(self.path)
                body = self._body() if method in ("POST", "PUT", "PATCH") else None
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                with fake._lock:
                    fake.requests.append(
                        {"method": method, "path": url.path, "query": query,
                         "body": json.loads(json.dumps(body)),
                         "content_type": self.headers.get("Content-Type")}
                    )  # fmt: skip
                    status, answer = fake.answer(method, url.path, query, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_PUT(self) -> None:
                self._handle("PUT")

            def do_PATCH(self) -> None:
                self._handle("PATCH")

            def do_DELETE(self) -> None:
                self._handle("DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> FakeKube:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reset(self) -> None:
        with self._lock:
            self.objects.clear()
            self.requests.clear()

    def kubeconfig(self, path: str, namespace: str = "default") -> str:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": "fake-token"}}],
            "contexts": [
                {
                    "name": "fake",
                    "context": {"cluster": "fake", "user": "fake", "namespace": namespace},
                }
            ],
            "current-context": "fake",
        }
        with open(path, "w") as fh:
            json.dump(config, fh)
        return path

    # -- the API -----------------------------------------------------------------------------

    @staticmethod
    def _status(code: int, reason: str, message: str) -> tuple[int, dict[str, Any]]:
        return code, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                      "reason": reason, "message": message, "code": code}  # fmt: skip

    def answer(self, method, path, query, body) -> tuple[int, dict[str, Any]]:
        m = PATH.match(path)
        if not m:
            return self._status(404, "NotFound", f"no route {path}")
        ns, plural, name = m.group("ns"), m.group("plural"), m.group("name")
        key = (plural, ns, name or "")
        if method == "GET" and name is None:
            items = [o for (p, n, _), o in sorted(self.objects.items()) if (p, n) == (plural, ns)]
            selector = query.get("labelSelector")
            if selector:
                wanted = dict(part.split("=", 1) for part in selector.split(","))
                items = [
                    o for o in items
                    if all(o["metadata"].get("labels", {}).get(k) == v for k, v in wanted.items())
                ]  # fmt: skip
            return 200, {"kind": "List", "metadata": {"continue": ""}, "items": items}
        if method == "POST":
            meta = body.setdefault("metadata", {})
            if not meta.get("name"):
                meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
            key = (plural, ns, meta["name"])
            if key in self.objects:
                return self._status(409, "AlreadyExists", f"{plural} {meta['name']} exists")
            meta.update(
                namespace=ns, uid=str(uuid.uuid4()), creationTimestamp="2026-01-01T00:00:00Z"
            )
            return self._store(key, body, 201)
        if key not in self.objects:
            return self._status(404, "NotFound", f'{plural} "{name}" not found')
        if method == "GET":
            return 200, self.objects[key]
        if method == "DELETE":
            del self.objects[key]
            return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success"}
        if method == "PUT":
            current = self.objects[key]["metadata"]["resourceVersion"]
            if body["metadata"].get("resourceVersion") != current:
                return self._status(409, "Conflict", "resourceVersion does not match")
            body["metadata"].update(
                {
                    k: self.objects[key]["metadata"][k]
                    for k in ("uid", "creationTimestamp", "namespace")
                }
            )
            return self._store(key, body, 200)
        if method == "PATCH":
            return self._store(key, _merge(self.objects[key], body), 200)
        return self._status(405, "MethodNotAllowed", method)

    def _store(self, key, obj, code) -> tuple[int, dict[str, Any]]:
        self._version += 1
        obj["metadata"]["resourceVersion"] = str(self._version)
        self.objects[key] = json.loads(json.dumps(obj))
        return code, obj
