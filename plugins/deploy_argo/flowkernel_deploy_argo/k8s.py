"""The Kubernetes calls: Argo's custom objects through the ``kubernetes`` client.

Configuration comes from the kubeconfig (``KUBECONFIG`` or ``~/.kube/config``), else from the
pod's service account when running in a cluster. Writes ask the API server for strict field
validation, so an unknown field is an error instead of being dropped silently.
"""

from __future__ import annotations

from typing import Any

from flowkernel.errors import FlowkernelError

GROUP, VERSION = "argoproj.io", "v1alpha1"
SELECTOR = "app.kubernetes.io/part-of=flowkernel"


class KubernetesError(FlowkernelError):
    """A Kubernetes API call failed (the message has the status and the server's reason)."""

    headline = "Kubernetes error"


class ArgoApi:
    """WorkflowTemplates and Workflows of one namespace.

    :param namespace: the namespace (None: the kubeconfig context's, else ``default``).
    """

    def __init__(self, namespace: str | None = None):
        from kubernetes import client, config

        try:
            config.load_kube_config()
            _, context = config.list_kube_config_contexts()
            default = (context or {}).get("context", {}).get("namespace") or "default"
        except (config.ConfigException, FileNotFoundError, TypeError):
            try:
                config.load_incluster_config()
            except config.ConfigException:
                raise KubernetesError(
                    "no Kubernetes configuration: set KUBECONFIG (or ~/.kube/config), or run "
                    "inside a cluster"
                ) from None
            default = "default"
        self.namespace = namespace or default
        self.api = client.CustomObjectsApi()

    def _call(self, what: str, func: Any, *args: Any, missing_ok: bool = False, **kw: Any) -> Any:
        from kubernetes.client.exceptions import ApiException

        try:
            return func(GROUP, VERSION, self.namespace, *args, **kw)
        except ApiException as exc:
            if missing_ok and exc.status == 404:
                return None
            raise KubernetesError(f"{what}: {exc.status} {exc.reason}: {exc.body}") from None

    # -- any Argo kind, by plural: workflowtemplates, cronworkflows, workflows -------------------

    def get(self, plural: str, name: str) -> dict[str, Any] | None:
        """The object, or None if there is none."""
        return self._call(
            f"reading {plural} {name}",
            self.api.get_namespaced_custom_object,
            plural,
            name,
            missing_ok=True,
        )

    def apply(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Create the object, or replace the one of the same name (its ``resourceVersion``)."""
        name = obj["metadata"]["name"]
        existing = self.get(plural, name)
        if existing is None:
            return self.create(plural, obj)
        body = {**obj, "metadata": dict(obj["metadata"])}
        body["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
        return self._call(
            f"replacing {plural} {name}",
            self.api.replace_namespaced_custom_object,
            plural,
            name,
            body,
            field_validation="Strict",
        )

    def create(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        return self._call(
            f"creating {plural}",
            self.api.create_namespaced_custom_object,
            plural,
            obj,
            field_validation="Strict",
        )

    def list(self, plural: str) -> list[dict[str, Any]]:
        """Every flowkernel object of that kind in the namespace (all pages)."""
        items: list[dict[str, Any]] = []
        token = None
        while True:
            kw: dict[str, Any] = {"label_selector": SELECTOR, "limit": 100}
            if token:
                kw["_continue"] = token
            page = self._call(
                f"listing {plural}", self.api.list_namespaced_custom_object, plural, **kw
            )
            items += page.get("items", [])
            token = page.get("metadata", {}).get("continue")
            if not token:
                return items

    def delete(self, plural: str, name: str) -> bool:
        """Delete it; False if there was none."""
        found = self._call(
            f"deleting {plural} {name}",
            self.api.delete_namespaced_custom_object,
            plural,
            name,
            missing_ok=True,
        )
        return found is not None

    def terminate_workflow(self, name: str) -> None:
        """Argo's "terminate": stop every pod now, run no exit handler."""
        self._call(
            f"terminating workflow {name}",
            self.api.patch_namespaced_custom_object,
            "workflows",
            name,
            {"spec": {"shutdown": "Terminate"}},
        )
