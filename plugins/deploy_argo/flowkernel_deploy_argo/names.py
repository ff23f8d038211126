"""Names Kubernetes and Argo accept, derived from Python names: stable, and short enough.

A name that does not fit is cut and given a hash suffix of the *original* name, so two long
names that share a prefix stay different and the same flow always gets the same name.
"""

from __future__ import annotations

import hashlib
import re

#: WorkflowTemplate names: Argo copies them into 63-character labels, and a CronWorkflow of the
#: same name may have at most 52; 45 leaves room for Argo's suffixes on what it derives.
TEMPLATE_NAME_LIMIT = 45
#: Template and DAG task names (Argo allows 128; pod names are derived from them).
STEP_NAME_LIMIT = 63
_INVALID_DNS = re.compile(r"[^a-z0-9.-]+")
_INVALID_TEMPLATE = re.compile(r"[^a-zA-Z0-9-]+")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def shorten(name: str, limit: int, original: str | None = None) -> str:
    """``name`` if it fits in ``limit``, else its head + ``-`` + a hash of ``original``."""
    if len(name) <= limit:
        return name
    head = name[: limit - 9].rstrip("-.")
    return f"{head}-{_digest(original or name)}"


def object_name(text: str, limit: int = TEMPLATE_NAME_LIMIT) -> str:
    """A DNS-1123 subdomain for a Kubernetes object: ``My_Flow`` -> ``my-flow``,
    ``proj.test.-x.F`` -> ``proj.test.x.f`` (each dot-separated label starts and ends with a
    letter or digit)."""
    cleaned = _INVALID_DNS.sub("-", text.lower().replace("_", "-"))
    labels = [label.strip("-") for label in cleaned.split(".")]
    name = ".".join(label for label in labels if label)
    if not name:
        name = "flow"
    return shorten(name, limit, text)


def template_name(text: str) -> str:
    """An Argo template or DAG task name (``[a-zA-Z0-9][-a-zA-Z0-9]*``): ``my_step`` ->
    ``my-step``."""
    name = _INVALID_TEMPLATE.sub("-", text.replace("_", "-")).strip("-")
    if not name or not name[0].isalnum():
        name = "s" + name
    return shorten(name, STEP_NAME_LIMIT, text)
