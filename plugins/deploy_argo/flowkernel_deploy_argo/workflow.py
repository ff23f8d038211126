"""A run of a deployed flow: the ``Workflow`` object ``trigger`` creates, and its parameters."""

from __future__ import annotations

import copy
from typing import Any

import click

from flowkernel.errors import UsageError
from flowkernel_deploy_argo.compiler import API_VERSION, LABELS, safe_json


def parse_parameters(flow_cls: type, args: list[str]) -> dict[str, str]:
    """``--alpha 6 --label x`` -> workflow arguments (``{"alpha": "6", "label": "\\"x\\""}``):
    each value parsed by its Parameter's type, then written as Argo-safe JSON."""
    from flowkernel.flow.parameters import flow_parameters

    declared = flow_parameters(flow_cls)
    options = [
        click.Option([f"--{p.name}", attr], type=p.click_type, default=None)
        for attr, p in declared.items()
    ]
    command = click.Command("trigger", params=options)
    try:
        with command.make_context("trigger", list(args)) as ctx:
            values = dict(ctx.params)
    except click.ClickException as exc:
        raise UsageError(exc.format_message()) from None
    return {
        declared[attr].name: safe_json(value) for attr, value in values.items() if value is not None
    }


def workflow_object(template: dict[str, Any], arguments: dict[str, str]) -> dict[str, Any]:
    """The Workflow that runs ``template`` with ``arguments`` (the others keep their defaults)."""
    name = template["metadata"]["name"]
    metadata: dict[str, Any] = {
        "generateName": f"{name}-",
        "labels": {**LABELS, "app.kubernetes.io/name": "flowkernel-run"},
        "annotations": {
            "flowkernel/flow_name": template["metadata"]["annotations"]["flowkernel/flow_name"]
        },
    }
    if "namespace" in template["metadata"]:
        metadata["namespace"] = template["metadata"]["namespace"]
    spec: dict[str, Any] = {"workflowTemplateRef": {"name": name}}
    if arguments:
        spec["arguments"] = {"parameters": [{"name": k, "value": v} for k, v in arguments.items()]}
    return {"apiVersion": API_VERSION, "kind": "Workflow", "metadata": metadata, "spec": spec}


def resolved_spec(workflow: dict[str, Any], template: dict[str, Any]) -> dict[str, Any]:
    """What Argo runs for ``workflow``: the template's spec, the workflow's arguments merged in."""
    spec = copy.deepcopy(template["spec"])
    given = {
        p["name"]: p["value"] for p in workflow["spec"].get("arguments", {}).get("parameters", [])
    }
    params = spec.get("arguments", {}).get("parameters", [])
    known = {p["name"] for p in params}
    unknown = sorted(set(given) - known)
    if unknown:
        raise UsageError(f"the workflow template has no parameter {', '.join(unknown)}")
    for param in params:
        if param["name"] in given:
            param["value"] = given[param["name"]]
    return spec
