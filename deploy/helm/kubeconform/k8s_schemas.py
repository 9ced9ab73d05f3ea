"""Write kubeconform JSON Schemas for Kubernetes kinds from a Kubernetes OpenAPI v2 document (swagger.json).

kubeconform normally downloads its schemas from GitHub. Where that is impossible (no internet), this script
produces equivalent "standalone-strict" schemas from any Kubernetes swagger.json, e.g. the one shipped in the
k8s.io/cli-runtime Go module (``go mod download -json k8s.io/cli-runtime@<version>``):

- one file per kind, named as kubeconform's ``{{ .ResourceKind }}{{ .KindSuffix }}.json`` template expects
  (``deployment-apps-v1.json``, ``service-v1.json``, ``poddisruptionbudget-policy-v1.json``);
- self-contained: the definitions a kind reaches are copied into the file and referenced locally;
- strict: every object with declared properties rejects unknown ones (``additionalProperties: false``), which
  is what ``kubeconform -strict`` relies on to catch misspelt or misplaced fields;
- IntOrString and Quantity accept a string or a number, as the API server does.

Standard library only, so it runs wherever ``python3`` does.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
REF_PREFIX = "#/definitions/"
DEFAULT_KINDS = (
    "ConfigMap",
    "CronJob",
    "Deployment",
    "HorizontalPodAutoscaler",
    "Ingress",
    "Job",
    "NetworkPolicy",
    "Pod",
    "PodDisruptionBudget",
    "Role",
    "RoleBinding",
    "Secret",
    "Service",
    "ServiceAccount",
    "StatefulSet",
)


def kind_suffix(group: str, version: str) -> str:
    """kubeconform's ``{{ .KindSuffix }}`` for an apiVersion's group and version ("" group = core)."""
    if not group:
        return f"-{version.lower()}"
    return f"-{group.split('.')[0].lower()}-{version.lower()}"


def _fix(node: Any) -> Any:
    """A copy of a schema node with special formats widened and every property-bearing object made strict."""
    if isinstance(node, list):
        return [_fix(n) for n in node]
    if not isinstance(node, dict):
        return node
    if node.get("format") == "int-or-string":
        return {"oneOf": [{"type": "string"}, {"type": "integer"}]}
    out = {k: _fix(v) for k, v in node.items()}
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def _refs(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(REF_PREFIX):
            found.add(ref[len(REF_PREFIX) :])
        for v in node.values():
            _refs(v, found)
    elif isinstance(node, list):
        for v in node:
            _refs(v, found)


def reachable(definitions: dict[str, Any], root: str) -> list[str]:
    """Names of the definitions ``root`` refers to, directly or not (``root`` included), sorted."""
    seen: set[str] = set()
    todo = [root]
    while todo:
        name = todo.pop()
        if name in seen or name not in definitions:
            continue
        seen.add(name)
        found: set[str] = set()
        _refs(definitions[name], found)
        todo.extend(found - seen)
    return sorted(seen)


def kind_schema(definitions: dict[str, Any], name: str, group: str, version: str, kind: str) -> dict[str, Any]:
    """The standalone, strict schema of one kind."""
    defs: dict[str, Any] = {}
    for dep in reachable(definitions, name):
        if dep == INT_OR_STRING:
            defs[dep] = {"oneOf": [{"type": "string"}, {"type": "integer"}]}
        elif dep == QUANTITY:
            defs[dep] = {"oneOf": [{"type": "string"}, {"type": "number"}]}
        else:
            defs[dep] = _fix(definitions[dep])
    schema = json.loads(json.dumps(defs[name]))
    api_version = f"{group}/{version}" if group else version
    props = schema.setdefault("properties", {})
    props["apiVersion"] = {"type": "string", "enum": [api_version]}
    props["kind"] = {"type": "string", "enum": [kind]}
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind"})
    schema["additionalProperties"] = False
    schema["definitions"] = {k: v for k, v in defs.items() if k != name}
    return schema


def generate(swagger: Path, out: Path, kinds: set[str] | None) -> list[Path]:
    """Write one schema file per selected kind of ``swagger`` into ``out``; returns the files written."""
    definitions: dict[str, Any] = json.loads(swagger.read_text())["definitions"]
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, definition in sorted(definitions.items()):
        for gvk in definition.get("x-kubernetes-group-version-kind", []):
            kind, group, version = gvk["kind"], gvk.get("group", ""), gvk["version"]
            if kinds is not None and kind not in kinds:
                continue
            if kind.endswith("List") or "properties" not in definition:
                continue
            path = out / f"{kind.lower()}{kind_suffix(group, version)}.json"
            path.write_text(json.dumps(kind_schema(definitions, name, group, version, kind), sort_keys=True))
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """Command line: ``k8s_schemas.py --swagger swagger.json --out DIR [--kinds Deployment,Service|all]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--swagger", type=Path, required=True, help="Kubernetes OpenAPI v2 document")
    parser.add_argument("--out", type=Path, required=True, help="directory for the schema files")
    parser.add_argument("--kinds", default=",".join(DEFAULT_KINDS), help="comma-separated kinds, or 'all'")
    args = parser.parse_args(argv)
    kinds = None if args.kinds == "all" else {k.strip() for k in args.kinds.split(",") if k.strip()}
    written = generate(args.swagger, args.out, kinds)
    if not written:
        print(f"no schemas written from {args.swagger}", file=sys.stderr)
        return 1
    print(f"{len(written)} schemas in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
