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

    # -- WorkflowTemplates ------------------------------------------------------------------------

    def get_template(self, name: str) -> dict[str, Any] | None:
        api = self.api
        return self._call(
            f"reading workflowtemplate {name}",
            api.get_namespaced_custom_object,
            "workflowtemplates",
            name,
            missing_ok=True,
        )

    def apply_template(self, template: dict[str, Any]) -> dict[str, Any]:
        """Create the WorkflowTemplate, or replace the one of the same name."""
        name = template["metadata"]["name"]
        existing = self.get_template(name)
        if existing is None:
            return self._call(
                f"creating workflowtemplate {name}",
                self.api.create_namespaced_custom_object,
                "workflowtemplates",
                template,
                field_validation="Strict",
            )
        body = {**template, "metadata": dict(template["metadata"])}
        body["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
        return self._call(
            f"replacing workflowtemplate {name}",
            self.api.replace_namespaced_custom_object,
            "workflowtemplates",
            name,
            body,
            field_validation="Strict",
        )

    def list_templates(self) -> list[dict[str, Any]]:
        """Every flowkernel WorkflowTemplate of the namespace (all pages)."""
        items: list[dict[str, Any]] = []
        token = None
        while True:
            kw = {"label_selector": SELECTOR, "limit": 100}
            if token:
                kw["_continue"] = token
            page = self._call(
                "listing workflowtemplates",
                self.api.list_namespaced_custom_object,
                "workflowtemplates",
                **kw,
            )
            items += page.get("items", [])
            token = page.get("metadata", {}).get("continue")
            if not token:
                return items

    def delete_template(self, name: str) -> bool:
        """Delete it; False if there was none."""
        found = self._call(
            f"deleting workflowtemplate {name}",
            self.api.delete_namespaced_custom_object,
            "workflowtemplates",
            name,
            missing_ok=True,
        )
        return found is not None

    # -- Workflows --------------------------------------------------------------------------------

    def create_workflow(self, workflow: dict[str, Any]) -> dict[str, Any]:
        return self._call(
            "creating workflow",
            self.api.create_namespaced_custom_object,
            "workflows",
            workflow,
            field_validation="Strict",
        )

    def get_workflow(self, name: str) -> dict[str, Any] | None:
        return self._call(
            f"reading workflow {name}",
            self.api.get_namespaced_custom_object,
            "workflows",
            name,
            missing_ok=True,
        )

    def terminate_workflow(self, name: str) -> None:
        """Argo's "terminate": stop every pod now, run no exit handler."""
        self._call(
            f"terminating workflow {name}",
            self.api.patch_namespaced_custom_object,
            "workflows",
            name,
            {"spec": {"shutdown": "Terminate"}},
        )
