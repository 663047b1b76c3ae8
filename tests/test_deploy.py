"""The deployment files in deploy/: validated offline, as an operator's tools would read them.

The Kubernetes manifests are checked against the Kubernetes API schemas that the
`kubernetes-validate` package ships (strict: an unknown or misspelt field fails), then for what
the registry needs of them: probes on /livez and /readyz, the image's non-root uid, a read-only
root, settings from the ConfigMap and secrets from the Secret, selectors that match the pods.
The compose file is read by `docker-compose config`, which resolves and checks it as `up` would.
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent / "clients"))

from clienttools import find_tool

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
IMAGE_UID = 10001  # the Dockerfile's `ARG UID`
COMPOSE_SECRETS = {
    "POSTGRES_PASSWORD": "test-postgres-password",
    "S3_SECRET_KEY": "test-s3-secret-key",
    "OCIREGISTRY_ADMIN_PASSWORD": "test-admin-password",
}


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())


def manifests() -> list[dict[str, Any]]:
    """Every resource the kustomization lists, in its order."""
    documents = []
    for resource in kustomization()["resources"]:
        documents += [doc for doc in yaml.safe_load_all((KUBERNETES / resource).read_text()) if doc]
    return documents


def resource(kind: str) -> dict[str, Any]:
    (found,) = [doc for doc in manifests() if doc["kind"] == kind]
    return found


def test_kustomization_lists_every_manifest() -> None:
    listed = set(kustomization()["resources"])
    on_disk = {path.name for path in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk
    kinds = {doc["kind"] for doc in manifests()}
    assert {"Deployment", "Service", "PodDisruptionBudget", "ConfigMap", "Secret"} <= kinds


@pytest.mark.parametrize("document", manifests(), ids=lambda doc: doc["kind"])
def test_manifest_is_valid_against_the_kubernetes_schemas(document: dict[str, Any]) -> None:
    version = kubernetes_validate.latest_version()
    # Raises ValidationError (with the failing path) on any schema violation.
    kubernetes_validate.validate(document, version, strict=True)


def test_the_schema_check_refuses_a_broken_manifest() -> None:
    """The validation above is real: a misspelt field and a wrong type are both refused."""
    version = kubernetes_validate.latest_version()
    misspelt = copy.deepcopy(resource("Deployment"))
    misspelt["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    wrong_type = copy.deepcopy(resource("Deployment"))
    wrong_type["spec"]["replicas"] = "two"
    for broken in (misspelt, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(broken, version, strict=True)


def test_deployment_probes_security_and_settings() -> None:
    deployment = resource("Deployment")
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]

    assert container["startupProbe"]["httpGet"]["path"] == "/livez"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["requests"]["cpu"]
    assert container["resources"]["requests"]["memory"]

    pod_security = pod["spec"]["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    assert pod_security["runAsUser"] == IMAGE_UID
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    # A read-only root needs a writable /tmp and data folder.
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    assert {"/tmp", "/data"} <= mounts

    # Settings from the ConfigMap, secrets from the Secret, both defined here.
    sources = container["envFrom"]
    assert {"name": resource("ConfigMap")["metadata"]["name"]} in [
        source.get("configMapRef") for source in sources
    ]
    assert {"name": resource("Secret")["metadata"]["name"]} in [
        source.get("secretRef") for source in sources
    ]
    config = resource("ConfigMap")["data"]
    secrets = resource("Secret")["stringData"]
    assert "OCIREGISTRY_DATABASE_URL" in secrets and "AWS_SECRET_ACCESS_KEY" in secrets
    assert config["OCIREGISTRY_STORAGE"].startswith("s3://")
    assert not set(config) & set(secrets)
    assert not any("PASSWORD" in key or "SECRET" in key for key in config)

    # The grace period covers the readiness delay and the shutdown timeout.
    grace = pod["spec"]["terminationGracePeriodSeconds"]
    delay = int(config["OCIREGISTRY_SHUTDOWN_DELAY_SECONDS"])
    timeout = int(config["OCIREGISTRY_SHUTDOWN_TIMEOUT_SECONDS"])
    assert grace > delay + timeout


def test_service_and_disruption_budget_select_the_pods() -> None:
    deployment = resource("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()

    service = resource("Service")
    assert service["spec"]["selector"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert port["targetPort"] in [p["name"] for p in container["ports"]]

    budget = resource("PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert deployment["spec"]["replicas"] > budget["spec"].get("maxUnavailable", 0)


def compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    compose = find_tool("docker-compose")
    return subprocess.run(
        [compose, "--file", str(DEPLOY / "compose.yaml"), "config"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", **env},
        check=False,
    )


def test_compose_file_is_valid_and_wires_the_cluster() -> None:
    result = compose_config(COMPOSE_SECRETS)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    services = config["services"]
    assert {"registry-1", "registry-2", "nginx", "postgres", "s3"} <= set(services)

    for name in ("registry-1", "registry-2"):
        registry = services[name]
        env = registry["environment"]
        password = COMPOSE_SECRETS["POSTGRES_PASSWORD"]
        assert env["OCIREGISTRY_DATABASE_URL"] == (
            f"postgresql+asyncpg://ociregistry:{password}@postgres:5432/ociregistry"
        )
        assert env["OCIREGISTRY_STORAGE"].startswith("s3://")
        assert env["OCIREGISTRY_S3_ENDPOINT_URL"] == "http://s3:9000"
        assert env["AWS_SECRET_ACCESS_KEY"] == COMPOSE_SECRETS["S3_SECRET_KEY"]
        assert registry["read_only"] is True
        assert "/tmp" in registry["tmpfs"]
        assert "ports" not in registry  # reached through nginx only
        assert registry["depends_on"]["postgres"]["condition"] == "service_healthy"

    nginx = services["nginx"]
    assert any(
        volume.endswith(":/etc/nginx/conf.d/default.conf:ro")
        and volume.startswith(str(DEPLOY / "nginx.conf"))
        for volume in nginx["volumes"]
    )
    assert nginx["ports"]


def test_compose_file_requires_its_secrets() -> None:
    """No default password hides in the file: each secret missing is a refusal naming it."""
    for missing in COMPOSE_SECRETS:
        env = {key: value for key, value in COMPOSE_SECRETS.items() if key != missing}
        result = compose_config(env)
        assert result.returncode != 0
        assert f"set {missing}" in result.stderr, result.stderr


def test_nginx_balances_the_compose_instances_and_streams() -> None:
    text = (DEPLOY / "nginx.conf").read_text()
    directives = {
        line.split("#")[0].strip().rstrip(";")
        for line in text.splitlines()
        if line.split("#")[0].strip()
    }
    assert "client_max_body_size 0" in directives
    assert "proxy_request_buffering off" in directives
    assert "proxy_buffering off" in directives
    assert "proxy_pass http://ociregistry" in directives
    upstream = re.search(r"upstream ociregistry \{(.*?)\}", text, re.DOTALL)
    assert upstream is not None
    servers = re.findall(r"^\s*server\s+(\S+?)[\s;]", upstream.group(1), re.MULTILINE)
    # Round-robin (no ip_hash, hash or least_conn) over exactly the compose instances.
    assert sorted(servers) == ["registry-1:5000", "registry-2:5000"]
    assert not re.search(r"^\s*(ip_hash|hash|least_conn|random)\b", upstream.group(1), re.M)
