"""What tests/test_deploy_manifests.py checks in deploy/ beyond the schemas: each check
returns the problems it finds (``[]`` when none), so a test can run it on the real files and
on a broken copy."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import yaml
from aiohttp.web import RouteDef

from gateway import config as config_mod
from gateway.api.ops import routes
from gateway.lifecycle import GOODBYE_S

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
K8S = DEPLOY / "k8s"
Doc = dict[str, Any]


def k8s_docs() -> list[tuple[str, Doc]]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":  # kustomize's file, not an API object
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                out.append((f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc))
    return out


DOCS = k8s_docs()


def find(kind: str, name: str, docs: list[tuple[str, Doc]] | None = None) -> Doc:
    return next(d for _, d in (docs or DOCS) if d["kind"] == kind
                and d["metadata"]["name"] == name)


def compose() -> Doc:
    doc: Doc = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return doc


def gateway_container(docs: list[tuple[str, Doc]]) -> Doc:
    c: Doc = find("Deployment", "voice-gateway", docs)["spec"]["template"]["spec"][
        "containers"][0]
    return c


def probe_problems(docs: list[tuple[str, Doc]]) -> list[str]:
    """Readiness on /readyz, liveness on /healthz, both served by the app, on a real port."""
    served = {r.path for r in routes if isinstance(r, RouteDef)}
    c = gateway_container(docs)
    ports = {p.get("name") for p in c.get("ports", [])} | {p["containerPort"]
                                                            for p in c.get("ports", [])}
    problems = []
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = c.get(probe, {}).get("httpGet", {})
        if get.get("path") != path:
            problems.append(f"{probe} is not on {path}")
        if get.get("path") not in served:
            problems.append(f"{probe}: the app serves no {get.get('path')}")
        if get.get("port") not in ports:
            problems.append(f"{probe}: no container port {get.get('port')}")
    return problems


def nonroot_problems(docs: list[tuple[str, Doc]]) -> list[str]:
    """Every container of every workload runs as a non-root user, without escalation."""
    problems = []
    for _, d in docs:
        if d["kind"] != "Deployment":
            continue
        pod = d["spec"]["template"]["spec"]
        for c in pod["containers"]:
            ctx = {**pod.get("securityContext", {}), **c.get("securityContext", {})}
            where = f"{d['metadata']['name']}/{c['name']}"
            if ctx.get("runAsNonRoot") is not True or ctx.get("runAsUser", 1) == 0:
                problems.append(f"{where} may run as root")
            if c.get("securityContext", {}).get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where} may escalate privileges")
            if "ALL" not in c.get("securityContext", {}).get("capabilities", {}).get("drop", []):
                problems.append(f"{where} keeps Linux capabilities")
    return problems


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def selector_problems(docs: list[tuple[str, Doc]]) -> list[str]:
    """The Deployment, its PDB and its Service select the gateway pods and nothing else;
    the Service's target port is a port of those pods."""
    pods = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"]
            for _, d in docs if d["kind"] == "Deployment"}
    problems = []
    dep = find("Deployment", "voice-gateway", docs)
    if not selects(dep["spec"]["selector"]["matchLabels"], pods["voice-gateway"]):
        problems.append("the Deployment's selector misses its own pods")
    checks = (("PodDisruptionBudget", find("PodDisruptionBudget", "voice-gateway", docs)
               ["spec"]["selector"].get("matchLabels", {})),
              ("Service", find("Service", "voice-gateway", docs)["spec"].get("selector", {})))
    for kind, sel in checks:
        chosen = {name for name, labels in pods.items() if selects(sel, labels)}
        if chosen != {"voice-gateway"}:
            problems.append(f"the {kind} selects {sorted(chosen)}, not the gateway pods")
    names = {p.get("name") for p in gateway_container(docs)["ports"]}
    for p in find("Service", "voice-gateway", docs)["spec"]["ports"]:
        if p.get("targetPort") not in names:
            problems.append(f"the Service targets port {p.get('targetPort')!r}, not served")
    return problems


def gateway_toml(docs: list[tuple[str, Doc]], tmp: Path) -> config_mod.Config:
    """The ConfigMap's gateway.toml, loaded by the gateway's own loader (unknown keys fail)."""
    path = tmp / "gateway.toml"
    path.write_text(find("ConfigMap", "voice-gateway-config", docs)["data"]["gateway.toml"])
    return config_mod.load(path, {"GATEWAY_TOKEN_SECRET": "x"})


def grace_problems(docs: list[tuple[str, Doc]], tmp: Path) -> list[str]:
    """The pod's grace period covers preStop + the drain + the goodbye."""
    cfg = gateway_toml(docs, tmp)
    pod = find("Deployment", "voice-gateway", docs)["spec"]["template"]["spec"]
    command = " ".join(gateway_container(docs)["lifecycle"]["preStop"]["exec"]["command"])
    m = re.search(r"sleep\((\d+(?:\.\d+)?)\)", command)
    pre_stop = float(m.group(1)) if m else 0.0
    need = pre_stop + cfg.server.drain_timeout_s + GOODBYE_S
    grace = pod.get("terminationGracePeriodSeconds", 30)
    return [] if grace > need else [f"terminationGracePeriodSeconds {grace} <= {need:g}"]


def media_problems(docs: list[tuple[str, Doc]], tmp: Path) -> list[str]:
    """One UDP port per call: the range covers max_calls, below the ephemeral ports."""
    cfg = gateway_toml(docs, tmp)
    size = cfg.media.port_max - cfg.media.port_min + 1
    problems = []
    if size < cfg.server.max_calls:
        problems.append(f"{size} media ports for max_calls {cfg.server.max_calls}")
    if cfg.media.port_max >= 32768:
        problems.append("media ports inside the kernel's ephemeral range")
    return problems


SECRET_ENV = {"OPENAI_API_KEY", "GATEWAY_API_KEYS", "GATEWAY_ADMIN_TOKEN",
              "GATEWAY_TOKEN_SECRET", "TWILIO_AUTH_TOKEN", "GATEWAY_CONFIG"}


def known_env() -> set[str]:
    names = {f"GATEWAY_{sec.upper()}_{f.name.upper()}"
             for sec, cls in config_mod._SECTIONS.items() for f in dataclasses.fields(cls)}
    return names | set(config_mod._SHORT_ENV) | SECRET_ENV


def env_problems(docs: list[tuple[str, Doc]], compose_doc: Doc) -> list[str]:
    """Every GATEWAY_* variable the files set is a setting the gateway reads."""
    names = {e["name"] for e in gateway_container(docs).get("env", [])}
    names |= set(find("Secret", "voice-gateway-secrets", docs)["stringData"])
    for svc in compose_doc["services"].values():
        names |= set(svc.get("environment") or {})
    unknown = sorted(n for n in names if n.startswith("GATEWAY_") and n not in known_env())
    return [f"unknown setting {n}" for n in unknown]


def go_duration(text: str) -> float:
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    assert parts and "".join(a + u for a, u in parts) == text, text
    return sum(float(a) * units[u] for a, u in parts)


def compose_problems(doc: Doc) -> list[str]:
    """Each gateway's stop grace covers its drain and goodbye; media ranges do not overlap."""
    problems = []
    ranges = []
    for name, svc in doc["services"].items():
        env = svc.get("environment") or {}
        if "GATEWAY_PORT" not in env:
            continue
        drain = float(env.get("GATEWAY_SERVER_DRAIN_TIMEOUT_S", 20))
        grace = go_duration(str(svc.get("stop_grace_period", "10s")))
        if grace <= drain + GOODBYE_S:
            problems.append(f"{name}: stop_grace_period {grace:g}s <= {drain + GOODBYE_S:g}s")
        ranges.append((int(env["GATEWAY_MEDIA_PORT_MIN"]), int(env["GATEWAY_MEDIA_PORT_MAX"])))
    ranges.sort()
    for (_, hi), (lo, _) in zip(ranges, ranges[1:], strict=False):
        if lo <= hi:
            problems.append("two gateways share media ports")
    return problems


def dockerfile_problems(text: str) -> list[str]:
    """The final stage runs as a non-root user and has a HEALTHCHECK on /healthz."""
    lines = re.sub(r"\\\n", " ", text).splitlines()
    final = lines[max(i for i, line in enumerate(lines) if line.startswith("FROM ")):]
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    problems = []
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append("the image runs as root")
    health = [line for line in final if line.startswith("HEALTHCHECK ")]
    if not health or "/healthz" not in health[-1] or "NONE" in health[-1].split():
        problems.append("no HEALTHCHECK on /healthz")
    return problems
