"""Run an Argo Workflow on this machine: each container's command as a local process.

Argo's semantics for the subset the compiler emits: DAG templates (``depends`` expressions
with task results, ``when``, ``withParam`` / ``withItems`` fan-out with aggregated outputs,
``failFast``), container templates (inputs, ``{{...}}`` substitution, Kubernetes' ``$(VAR)``
expansion, outputs read from ``valueFrom.path`` files, ``retryStrategy`` with ``{{retries}}``
and backoff, ``activeDeadlineSeconds``), and the workflow's ``parallelism`` and
``activeDeadlineSeconds``. The local environment stands in for the image; each volume mount
becomes a fresh directory per attempt. Anything else in a manifest is refused, by name, before
anything runs: a manifest that runs here runs the way Argo would run it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

import psutil

from flowkernel.errors import UsageError

SUPPORTED = {
    "spec": {"entrypoint", "arguments", "parallelism", "volumes", "workflowMetadata",
             "podMetadata", "templates", "activeDeadlineSeconds", "workflowTemplateRef"},
    "template": {"name", "inputs", "outputs", "container", "dag", "retryStrategy",
                 "activeDeadlineSeconds", "metadata"},
    "dag": {"tasks", "failFast"},
    "task": {"name", "template", "depends", "when", "withParam", "withItems", "arguments"},
    "container": {"image", "command", "args", "env", "resources", "volumeMounts"},
    "retryStrategy": {"limit", "retryPolicy", "backoff"},
    "volume": {"name", "emptyDir"},
    "inputs": {"parameters", "artifacts"},
    "artifact": {"name", "path", "raw"},
}  # fmt: skip
TAG = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")
KUBE_VAR = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")
DONE = ("Succeeded", "Failed", "Error", "Skipped", "Omitted")


class UnsupportedManifest(UsageError):
    """The manifest uses an Argo feature the local executor does not implement."""


def check_supported(spec: dict[str, Any]) -> None:
    """Refuse, by name, any field of ``spec`` the local executor would not honour."""

    def only(kind: str, obj: dict[str, Any], where: str) -> None:
        for key in obj:
            if key not in SUPPORTED[kind]:
                raise UnsupportedManifest(f"run-local does not implement {where}.{key}")

    only("spec", spec, "spec")
    for volume in spec.get("volumes", []):
        only("volume", volume, f"spec.volumes[{volume.get('name')}]")
    for tmpl in spec.get("templates", []):
        where = f"spec.templates[{tmpl.get('name')}]"
        only("template", tmpl, where)
        if "container" in tmpl:
            only("container", tmpl["container"], f"{where}.container")
        only("inputs", tmpl.get("inputs", {}), f"{where}.inputs")
        for artifact in tmpl.get("inputs", {}).get("artifacts", []):
            only("artifact", artifact, f"{where}.inputs.artifacts[{artifact.get('name')}]")
            if "raw" not in artifact:
                raise UnsupportedManifest(f"run-local supports raw input artifacts only: {where}")
        if "retryStrategy" in tmpl:
            only("retryStrategy", tmpl["retryStrategy"], f"{where}.retryStrategy")
            policy = tmpl["retryStrategy"].get("retryPolicy", "OnFailure")
            if policy not in ("Always", "OnFailure", "OnError"):
                raise UnsupportedManifest(f"run-local does not implement retryPolicy {policy}")
        if "dag" in tmpl:
            only("dag", tmpl["dag"], f"{where}.dag")
            for task in tmpl["dag"]["tasks"]:
                only("task", task, f"{where}.dag.tasks[{task.get('name')}]")
        if "container" not in tmpl and "dag" not in tmpl:
            raise UnsupportedManifest(f"run-local runs container and dag templates only: {where}")


# -- expressions ----------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<op>==|!=|&&|\|\||[()!])"
    r"|(?P<word>[A-Za-z0-9_.-]+))"
)


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise UsageError(f"cannot evaluate {text!r} at {text[pos:]!r}")
        kind = m.lastgroup or "word"
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def evaluate(text: str, lookup: Callable[[str], Any]) -> bool:
    """Evaluate a ``depends`` / ``when`` expression: ``&&``, ``||``, ``!``, parentheses,
    ``==`` / ``!=`` between quoted strings or words; a bare word is ``lookup(word)``."""
    tokens = _tokens(text)
    pos = 0

    def peek() -> str | None:
        return tokens[pos][1] if pos < len(tokens) else None

    def take() -> tuple[str, str]:
        nonlocal pos
        pos += 1
        return tokens[pos - 1]

    def atom() -> Any:
        kind, value = take()
        if value == "(":
            result = disjunction()
            take()
            return result
        if value == "!":
            return not truthy(atom())
        if kind == "str":
            return value[1:-1].replace("\\'", "'")
        if value in ("true", "false"):
            return value == "true"
        return lookup(value)

    def comparison() -> Any:
        left = atom()
        if peek() in ("==", "!="):
            op = take()[1]
            right = atom()
            return (str(left) == str(right)) == (op == "==")
        return left

    def conjunction() -> Any:
        result = truthy(comparison())
        while peek() == "&&":
            take()
            result = truthy(comparison()) and result
        return result

    def disjunction() -> Any:
        result = conjunction()
        while peek() == "||":
            take()
            result = conjunction() or result
        return result

    def truthy(value: Any) -> bool:
        return value if isinstance(value, bool) else value not in ("", "false", None)

    return bool(disjunction())


def substitute(text: str, values: dict[str, str], where: str) -> str:
    """Replace every ``{{name}}`` with its value, in one pass: a value is never re-read."""

    def one(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in values:
            raise UsageError(f"{where}: unresolved {{{{{name}}}}}")
        return values[name]

    return TAG.sub(one, text)


def expand_kube_vars(text: str, env: dict[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion of command, args and env values (``$$`` -> ``$``)."""

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env[name] if name in env else m.group(0)

    return KUBE_VAR.sub(one, text)


# -- the executor ---------------------------------------------------------------------------------


class Node:
    """What one DAG task (or one iteration of it) ended as."""

    def __init__(self, phase: str, outputs: dict[str, str] | None = None, message: str = ""):
        self.phase = phase
        self.outputs = outputs or {}
        self.message = message


class LocalWorkflow:
    """One Workflow: ``spec`` (the template's spec with the run's arguments), run locally.

    :param echo: called with ``(task name, stream, line)`` for every line a container prints.
    """

    def __init__(
        self,
        spec: dict[str, Any],
        name: str,
        namespace: str = "default",
        echo: Callable[[str, str, str], None] | None = None,
        workdir: str | None = None,
    ):
        check_supported(spec)
        self.spec = spec
        self.name = name
        self.templates = {t["name"]: t for t in spec["templates"]}
        self.globals = {
            "workflow.name": name,
            "workflow.uid": str(uuid.uuid4()),
            "workflow.namespace": namespace,
            "workflow.creationTimestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        for param in spec.get("arguments", {}).get("parameters", []):
            if "value" not in param:
                raise UsageError(f"workflow parameter '{param['name']}' has no value")
            self.globals[f"workflow.parameters.{param['name']}"] = str(param["value"])
        self.echo = echo
        self.workdir = workdir or tempfile.mkdtemp(prefix="argo-local-")
        self.slots = threading.BoundedSemaphore(int(spec.get("parallelism") or 1_000_000))
        self.failed = threading.Event()  # workflow deadline passed: stop everything
        self._procs: set[subprocess.Popen] = set()
        self._lock = threading.Lock()

    def run(self) -> str:
        """Run to the end; returns the workflow's phase: Succeeded, Failed or Error."""
        deadline = self.spec.get("activeDeadlineSeconds")
        timer = threading.Timer(int(deadline), self._deadline) if deadline else None
        if timer:
            timer.daemon = True
            timer.start()
        try:
            node = self.execute(self.spec["entrypoint"], {}, "")
        finally:
            if timer:
                timer.cancel()
            shutil.rmtree(self.workdir, ignore_errors=True)
        if self.failed.is_set():
            return "Failed"
        return "Succeeded" if node.phase == "Succeeded" else "Failed"

    def _deadline(self) -> None:
        self.failed.set()
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            _kill_tree(proc)

    def execute(self, name: str, inputs: dict[str, str], path: str) -> Node:
        template = self.templates.get(name)
        if template is None:
            raise UsageError(f"no template named '{name}'")
        values = dict(self.globals)
        for param in template.get("inputs", {}).get("parameters", []):
            if param["name"] in inputs:
                values[f"inputs.parameters.{param['name']}"] = inputs[param["name"]]
            elif "value" in param or "default" in param:
                values[f"inputs.parameters.{param['name']}"] = str(
                    param.get("value", param.get("default"))
                )
            else:
                raise UsageError(f"{path or name}: input parameter '{param['name']}' not given")
        if "dag" in template:
            return self._dag(template, values, path or name)
        return self._container(template, values, path or name)

    # -- DAG ------------------------------------------------------------------------------------

    def _dag(self, template: dict[str, Any], values: dict[str, str], path: str) -> Node:
        tasks = {t["name"]: t for t in template["dag"]["tasks"]}
        fail_fast = template["dag"].get("failFast", True)
        results: dict[str, Node] = {}
        running: dict[Future, str] = {}
        with ThreadPoolExecutor(max_workers=max(len(tasks), 1)) as pool:
            while len(results) < len(tasks):
                stop = self.failed.is_set() or (
                    fail_fast and any(n.phase in ("Failed", "Error") for n in results.values())
                )
                for name, task in tasks.items():
                    if name in results or name in running.values():
                        continue
                    deps = _depends_on(task.get("depends", ""))
                    if any(d not in results for d in deps):
                        continue
                    if stop:
                        results[name] = Node("Omitted", message="not started: the DAG failed")
                        continue
                    if not evaluate(task.get("depends") or "true", _results(results)):
                        results[name] = Node("Omitted")
                        continue
                    scope = {**values, **self._task_values(results, tasks)}
                    where = f"{path}.{name}"
                    if "when" in task and not evaluate(
                        substitute(task["when"], scope, where), lambda w: w
                    ):
                        results[name] = Node("Skipped")
                        continue
                    running[pool.submit(self._task, task, scope, where)] = name
                if not running:
                    if len(results) < len(tasks):
                        missing = sorted(set(tasks) - set(results))
                        raise UsageError(f"{path}: tasks never became ready: {missing}")
                    break
                done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in done:
                    results[running.pop(future)] = future.result()
        failed = [n for n in results.values() if n.phase in ("Failed", "Error")]
        outputs = self._dag_outputs(template, values, results, tasks, path)
        return Node("Failed" if failed else "Succeeded", outputs)

    def _task_values(self, results: dict[str, Node], tasks: dict[str, Any]) -> dict[str, str]:
        values: dict[str, str] = {}
        for name, node in results.items():
            for key, value in node.outputs.items():
                values[f"tasks.{name}.outputs.parameters.{key}"] = value
            if node.phase in ("Skipped", "Omitted"):  # outputs with a declared default only
                template = self.templates[tasks[name]["template"]]
                for param in template.get("outputs", {}).get("parameters", []):
                    default = param.get("valueFrom", {}).get("default")
                    if default is not None:
                        values[f"tasks.{name}.outputs.parameters.{param['name']}"] = default
            values[f"tasks.{name}.status"] = node.phase
        return values

    def _dag_outputs(self, template, values, results, tasks, path) -> dict[str, str]:
        outputs = {}
        scope = {**values, **self._task_values(results, tasks)}
        for param in template.get("outputs", {}).get("parameters", []):
            source = param.get("valueFrom", {}).get("parameter")
            if source is not None:
                outputs[param["name"]] = substitute(source, scope, f"{path}.outputs")
        return outputs

    def _task(self, task: dict[str, Any], scope: dict[str, str], where: str) -> Node:
        arguments = task.get("arguments", {}).get("parameters", [])
        if "withParam" in task or "withItems" in task:
            if "withParam" in task:
                raw = substitute(task["withParam"], scope, where)
                try:
                    items = json.loads(raw)
                except ValueError:
                    return Node("Error", message=f"{where}: withParam is not a JSON list: {raw!r}")
            else:
                items = task["withItems"]
            if not isinstance(items, list):
                return Node("Error", message=f"{where}: withParam is not a JSON list")
            futures = []
            with ThreadPoolExecutor(max_workers=max(len(items), 1)) as pool:
                for i, item in enumerate(items):
                    text = item if isinstance(item, str) else json.dumps(item)
                    inputs = {
                        a["name"]: substitute(str(a["value"]), {**scope, "item": text}, where)
                        for a in arguments
                    }
                    futures.append(
                        pool.submit(self.execute, task["template"], inputs, f"{where}({i})")
                    )
            children = [f.result() for f in futures]
            outputs: dict[str, str] = {}
            for key in {k for c in children for k in c.outputs}:
                outputs[key] = json.dumps([c.outputs.get(key, "") for c in children])
            ok = all(c.phase == "Succeeded" for c in children)
            return Node("Succeeded" if ok else "Failed", outputs)
        inputs = {a["name"]: substitute(str(a["value"]), scope, where) for a in arguments}
        return self.execute(task["template"], inputs, where)

    # -- containers -----------------------------------------------------------------------------

    def _container(self, template: dict[str, Any], values: dict[str, str], where: str) -> Node:
        strategy = template.get("retryStrategy")
        limit = int(strategy.get("limit", 0)) if strategy else 0
        backoff = _seconds((strategy or {}).get("backoff", {}).get("duration", "0s"))
        attempt = 0
        while True:
            scope = dict(values)
            if strategy:
                scope["retries"] = str(attempt)
            node = self._attempt(template, scope, f"{where}#{attempt}")
            if node.phase == "Succeeded" or attempt >= limit or self.failed.is_set():
                return node
            attempt += 1
            time.sleep(backoff)

    def _attempt(self, template: dict[str, Any], scope: dict[str, str], where: str) -> Node:
        container = template["container"]
        mounts = {}
        for mount in container.get("volumeMounts", []):
            mounts[mount["mountPath"]] = tempfile.mkdtemp(prefix="vol-", dir=self.workdir)
        for artifact in template.get("inputs", {}).get("artifacts", []):
            folder = os.path.dirname(artifact["path"])
            if folder not in mounts:
                mounts[folder] = tempfile.mkdtemp(prefix="art-", dir=self.workdir)
            data = substitute(artifact["raw"]["data"], scope, where)
            with open(_remap(artifact["path"], mounts), "w", encoding="utf-8") as fh:
                fh.write(data)
        env: dict[str, str] = {}
        for item in container.get("env", []):
            env[item["name"]] = expand_kube_vars(substitute(item["value"], scope, where), env)
        argv = [
            _remap(expand_kube_vars(substitute(a, scope, where), env), mounts)
            for a in [*container.get("command", []), *container.get("args", [])]
        ]
        if argv and argv[0] in ("python", "python3"):
            argv[0] = sys.executable  # the local environment stands in for the image
        deadline = template.get("activeDeadlineSeconds")
        with self.slots:
            if self.failed.is_set():
                return Node("Failed", message="workflow deadline exceeded")
            code = self._spawn(argv, {**os.environ, **env}, where, deadline)
        outputs = {}
        for param in template.get("outputs", {}).get("parameters", []):
            source = param.get("valueFrom", {})
            path = _remap(source.get("path", ""), mounts)
            try:
                with open(path) as fh:
                    outputs[param["name"]] = fh.read()
            except (FileNotFoundError, IsADirectoryError):
                if "default" not in source:
                    return Node("Error", message=f"{where}: output {param['name']} missing")
                outputs[param["name"]] = source["default"]
        return Node("Succeeded" if code == 0 else "Failed", outputs)

    def _spawn(self, argv: list[str], env: dict[str, str], where: str, deadline: Any) -> int:
        proc = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        with self._lock:
            self._procs.add(proc)
        readers = [
            threading.Thread(target=self._pump, args=(where, name, stream), daemon=True)
            for name, stream in (("stdout", proc.stdout), ("stderr", proc.stderr))
        ]
        for reader in readers:
            reader.start()
        try:
            code = proc.wait(timeout=int(deadline) if deadline else None)
        except subprocess.TimeoutExpired:
            _kill_tree(proc)
            code = proc.wait()
        for reader in readers:
            reader.join()
        with self._lock:
            self._procs.discard(proc)
        return code

    def _pump(self, where: str, stream_name: str, stream: Any) -> None:
        for raw in iter(stream.readline, b""):
            if self.echo is not None:
                self.echo(where, stream_name, raw.decode("utf-8", "replace").rstrip("\n"))
        stream.close()


def _remap(text: str, mounts: dict[str, str]) -> str:
    for mount, local in mounts.items():
        if text == mount or text.startswith(mount + "/"):
            return local + text[len(mount) :]
    return text


def _kill_tree(proc: subprocess.Popen) -> None:
    try:
        tree = [psutil.Process(proc.pid)]
        tree += tree[0].children(recursive=True)
    except psutil.NoSuchProcess:
        return
    for p in tree:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


_DEP = re.compile(r"([A-Za-z0-9][-A-Za-z0-9]*)(?:\.([A-Za-z]+))?")


def _depends_on(expression: str) -> list[str]:
    words = re.findall(r"[A-Za-z0-9][-A-Za-z0-9.]*", expression or "")
    return sorted({w.split(".")[0] for w in words if w not in ("true", "false")})


def _results(results: dict[str, Node]) -> Callable[[str], bool]:
    def lookup(word: str) -> bool:
        name, _, result = word.partition(".")
        phase = results[name].phase
        if not result:  # a bare task: it succeeded, was skipped, or is a daemon
            return phase in ("Succeeded", "Skipped")
        if result == "AnySucceeded" or result == "AllFailed":
            raise UnsupportedManifest(f"run-local does not implement depends {result}")
        return phase == result

    return lookup


def _seconds(duration: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([smh]?)", str(duration).strip())
    if not m:
        raise UnsupportedManifest(f"run-local does not implement backoff duration {duration!r}")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def workflow_name(generate_name: str) -> str:
    """What Argo does with ``generateName``: append 5 random lowercase letters and digits."""
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    return generate_name + "".join(secrets.choice(alphabet) for _ in range(5))
