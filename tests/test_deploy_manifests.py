"""The deployment files in deploy/, checked offline against their schemas and the gateway.

Schemas come from pinned PyPI packages (requirements.lock), nothing is fetched at test time:

- Kubernetes: ``kubernetes-validate`` bundles the JSON schemas of the Kubernetes OpenAPI per
  release; every document of ``deploy/k8s/*.yaml`` is validated in strict mode (unknown
  fields rejected) against ``K8S_VERSIONS``.
- Compose: ``check-jsonschema`` vendors the Compose Specification's ``compose-spec.json``
  (JSON Schema 2020-12; unknown keys rejected except ``x-*`` extensions).

Then checks a user would expect (``deploy_checks.py``: probes on the endpoints the app serves,
non-root, selectors that select, a grace period longer than the drain, settings that exist).
Each check is also run on a deliberately broken copy, which it must reject.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path

import check_jsonschema.builtin_schemas.vendor as vendored
import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy_checks import (
    DEPLOY,
    DOCS,
    K8S,
    Doc,
    compose,
    compose_problems,
    dockerfile_problems,
    env_problems,
    find,
    gateway_container,
    gateway_toml,
    grace_problems,
    media_problems,
    nonroot_problems,
    probe_problems,
    selector_problems,
)

#: The oldest release the manifests promise to work on, and the newest the package knows.
K8S_VERSIONS = ("1.30.0", "1.37.0")


def fresh() -> list[tuple[str, Doc]]:
    """A copy of the manifests to break."""
    return copy.deepcopy(DOCS)


# -- schemas -------------------------------------------------------------------------------

def test_the_package_bundles_the_stated_versions() -> None:
    bundled = kubernetes_validate.utils.all_versions()
    assert all(v in bundled for v in K8S_VERSIONS), bundled


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize(("where", "doc"), DOCS, ids=[w for w, _ in DOCS])
def test_k8s_document_matches_schema(where: str, doc: Doc, version: str) -> None:
    assert kubernetes_validate.validate(doc, version, strict=True) == version.rsplit(".", 1)[0]


K8S_BREAKAGES: list[tuple[str, str, Callable[[Doc], None]]] = [
    ("replicas as a word", "Deployment",
     lambda d: d["spec"].__setitem__("replicas", "three")),
    ("containerPort as text", "Deployment",
     lambda d: d["spec"]["template"]["spec"]["containers"][0]["ports"][0]
     .__setitem__("containerPort", "eighty")),
    ("misspelt probe field", "Deployment",
     lambda d: d["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]
     .__setitem__("pth", "/readyz")),
    ("misspelt selector", "PodDisruptionBudget",
     lambda d: d["spec"].__setitem__("selectr", d["spec"].pop("selector"))),
    ("ports not a list", "Service", lambda d: d["spec"].__setitem__("ports", {"port": 80})),
]


@pytest.mark.parametrize(("what", "kind", "breakage"), K8S_BREAKAGES,
                         ids=[b[0] for b in K8S_BREAKAGES])
def test_k8s_schema_rejects_a_broken_copy(what: str, kind: str,
                                          breakage: Callable[[Doc], None]) -> None:
    doc = copy.deepcopy(next(d for _, d in DOCS if d["kind"] == kind))
    breakage(doc)
    for version in K8S_VERSIONS:
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(doc, version, strict=True)


def test_strict_mode_is_what_rejects_unknown_fields() -> None:
    doc = copy.deepcopy(find("Service", "voice-gateway"))
    doc["spec"]["sesionAffinity"] = "None"
    kubernetes_validate.validate(doc, K8S_VERSIONS[0], strict=False)  # lenient: passes
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSIONS[0], strict=True)


def compose_validator() -> jsonschema.protocols.Validator:
    schema = json.loads((files(vendored) / "compose-spec.json").read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)  # type: ignore[no-any-return]


def test_compose_file_matches_the_compose_spec() -> None:
    errors = [f"{e.json_path}: {e.message}" for e in compose_validator().iter_errors(compose())]
    assert errors == []


COMPOSE_BREAKAGES: list[tuple[str, Callable[[Doc], None]]] = [
    ("restart as a number", lambda d: d["services"]["redis"].__setitem__("restart", 5)),
    ("misspelt service key", lambda d: d["services"]["gateway-a"].__setitem__(
        "stop_grace_perid", "40s")),
    ("misspelt top-level key", lambda d: d.__setitem__("servces", d.pop("services"))),
    ("unknown depends_on condition", lambda d: d["services"]["gateway-a"]["depends_on"]
     ["redis"].__setitem__("condition", "service_ready")),
    ("healthcheck test as a number", lambda d: d["services"]["redis"]["healthcheck"]
     .__setitem__("test", 1)),
]


@pytest.mark.parametrize(("what", "breakage"), COMPOSE_BREAKAGES,
                         ids=[b[0] for b in COMPOSE_BREAKAGES])
def test_compose_schema_rejects_a_broken_copy(what: str,
                                              breakage: Callable[[Doc], None]) -> None:
    doc = compose()
    breakage(doc)
    assert list(compose_validator().iter_errors(doc))


# -- what a user expects of them -----------------------------------------------------------

def test_deployment_probes_use_the_app_endpoints() -> None:
    assert probe_problems(DOCS) == []


def test_workloads_run_as_non_root() -> None:
    assert nonroot_problems(DOCS) == []


def test_selectors_select_the_gateway_pods() -> None:
    assert selector_problems(DOCS) == []


def test_grace_period_covers_the_drain(tmp_path: Path) -> None:
    assert grace_problems(DOCS, tmp_path) == []


def test_media_port_range_fits_max_calls(tmp_path: Path) -> None:
    assert media_problems(DOCS, tmp_path) == []


def test_every_gateway_variable_is_a_setting() -> None:
    assert env_problems(DOCS, compose()) == []


def test_compose_grace_and_media_ports() -> None:
    assert compose_problems(compose()) == []


def test_dockerfile_non_root_with_healthcheck() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert dockerfile_problems(text) == []
    uid = re.search(r"^USER (\d+)$", text, re.M)
    pod = find("Deployment", "voice-gateway")["spec"]["template"]["spec"]
    assert uid and int(uid.group(1)) == pod["securityContext"]["runAsUser"]


def test_kustomization_lists_every_manifest() -> None:
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kust["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml",
                                                       "secret.example.yaml"}
    assert listed == present
    assert kust["namespace"] == find("Namespace", kust["namespace"])["metadata"]["name"]


def _container(docs: list[tuple[str, Doc]]) -> Doc:
    return gateway_container(docs)


def _pod(docs: list[tuple[str, Doc]]) -> Doc:
    pod: Doc = find("Deployment", "voice-gateway", docs)["spec"]["template"]["spec"]
    return pod


def _set_toml(docs: list[tuple[str, Doc]], old: str, new: str) -> None:
    data = find("ConfigMap", "voice-gateway-config", docs)["data"]
    assert old in data["gateway.toml"]
    data["gateway.toml"] = data["gateway.toml"].replace(old, new)


Breakage = Callable[[list[tuple[str, Doc]]], None]
CHECK_BREAKAGES: list[tuple[str, str, Breakage]] = [
    ("readiness on /healthz", "probe",
     lambda ds: _container(ds)["readinessProbe"]["httpGet"].__setitem__("path", "/healthz")),
    ("liveness on a path the app lacks", "probe",
     lambda ds: _container(ds)["livenessProbe"]["httpGet"].__setitem__("path", "/health")),
    ("probe on an unnamed port", "probe",
     lambda ds: _container(ds)["readinessProbe"]["httpGet"].__setitem__("port", "web")),
    ("pod may run as root", "nonroot",
     lambda ds: _pod(ds)["securityContext"].__setitem__("runAsNonRoot", False)),
    ("container as uid 0", "nonroot",
     lambda ds: _container(ds)["securityContext"].__setitem__("runAsUser", 0)),
    ("escalation allowed", "nonroot",
     lambda ds: _container(ds)["securityContext"].__setitem__("allowPrivilegeEscalation",
                                                              True)),
    ("PDB selects nothing", "selector",
     lambda ds: find("PodDisruptionBudget", "voice-gateway", ds)["spec"]["selector"]
     .__setitem__("matchLabels", {"app": "gateway"})),
    ("Service selects redis", "selector",
     lambda ds: find("Service", "voice-gateway", ds)["spec"].__setitem__(
         "selector", {"app.kubernetes.io/name": "voice-gateway-redis"})),
    ("Service targets a missing port", "selector",
     lambda ds: find("Service", "voice-gateway", ds)["spec"]["ports"][0]
     .__setitem__("targetPort", "metrics")),
    ("grace period shorter than the drain", "grace",
     lambda ds: _pod(ds).__setitem__("terminationGracePeriodSeconds", 120)),
    ("drain longer than the grace period", "grace",
     lambda ds: _set_toml(ds, "drain_timeout_s = 120", "drain_timeout_s = 135")),
    ("media range smaller than max_calls", "media",
     lambda ds: _set_toml(ds, "port_max = 20199", "port_max = 20099")),
    ("misspelt setting", "env",
     lambda ds: _container(ds)["env"].append({"name": "GATEWAY_SERVR_INSTANCE_ID",
                                              "value": "x"})),
]


@pytest.mark.parametrize(("what", "check", "breakage"), CHECK_BREAKAGES,
                         ids=[b[0] for b in CHECK_BREAKAGES])
def test_each_check_rejects_a_broken_copy(what: str, check: str, breakage: Breakage,
                                          tmp_path: Path) -> None:
    docs = fresh()
    breakage(docs)
    run: dict[str, Callable[[], list[str]]] = {
        "probe": lambda: probe_problems(docs), "nonroot": lambda: nonroot_problems(docs),
        "selector": lambda: selector_problems(docs),
        "grace": lambda: grace_problems(docs, tmp_path),
        "media": lambda: media_problems(docs, tmp_path),
        "env": lambda: env_problems(docs, compose())}
    assert run[check]()


def test_a_bad_configmap_setting_fails_the_gateway_loader(tmp_path: Path) -> None:
    docs = fresh()
    _set_toml(docs, "heartbeat_s = 2.0", "heartbeat_secs = 2.0")
    with pytest.raises(ValueError, match="heartbeat_secs"):
        gateway_toml(docs, tmp_path)


@pytest.mark.parametrize(("what", "breakage"), [
    ("grace below the drain", lambda d: d["services"]["gateway-a"].__setitem__(
        "stop_grace_period", "30s")),
    ("overlapping media ports", lambda d: d["services"]["gateway-b"]["environment"]
     .__setitem__("GATEWAY_MEDIA_PORT_MIN", "20050")),
])
def test_compose_checks_reject_a_broken_copy(what: str,
                                             breakage: Callable[[Doc], None]) -> None:
    doc = compose()
    breakage(doc)
    assert compose_problems(doc)


@pytest.mark.parametrize(("what", "edit"), [
    ("no USER", lambda t: re.sub(r"^USER .*\n", "", t, flags=re.M)),
    ("USER root", lambda t: re.sub(r"^USER .*$", "USER root", t, flags=re.M)),
    ("no HEALTHCHECK", lambda t: t.replace("HEALTHCHECK ", "# HEALTHCHECK ")),
    ("HEALTHCHECK elsewhere", lambda t: t.replace("/healthz", "/readyz")),
])
def test_dockerfile_check_rejects_a_broken_copy(what: str,
                                                edit: Callable[[str], str]) -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    broken = edit(text)
    assert broken != text
    assert dockerfile_problems(broken)
