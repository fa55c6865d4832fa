"""Every overlay and the Argo CD folder rendered with the real ``kubectl kustomize``: what
each environment installs, and that Argo CD's project, Applications and argocd-cm agree
with it."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from gitopskit import ENVS, HEALTH_DIR, KUSTOMIZE, REPO, Manifest, kustomize

from dex_operator.config import OperatorConfig

Rendered = dict[str, list[Manifest]]

# dev runs what `make images` built and the dev cluster imported (never pulled); the shared
# environments a pinned release of every DEX image.
IMAGES = {
    "dev": "localhost/dex/{name}:dev",
    "staging": "ghcr.io/dataenginex/{name}:0.1.0-rc.1",
    "prod": "ghcr.io/dataenginex/{name}:0.1.0",
}
PLATFORM = {"dex-operator", "dex-feast", "dex-feast-redis", "mlflow", "dex-monitor"}
CRD_DIR = REPO / "manifests" / "crd"


def find(objs: list[Manifest], kind: str, name: str | None = None) -> list[Manifest]:
    return [o for o in objs if o["kind"] == kind and name in (None, o["metadata"]["name"])]


def one(objs: list[Manifest], kind: str, name: str) -> Manifest:
    found = find(objs, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def operator_container(objs: list[Manifest]) -> dict[str, Any]:
    deployment = one(objs, "Deployment", "dex-operator")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def group_of(obj: Manifest) -> str:
    api_version: str = obj["apiVersion"]
    return api_version.rpartition("/")[0]


# ------------------------------------------------------------------------------- overlays


@pytest.mark.parametrize("env", ENVS)
def test_overlay_installs_crds_rbac_and_operator(env: str, rendered: Rendered) -> None:
    objs = rendered[env]
    one(objs, "Namespace", "dex-system")
    crds = {o["metadata"]["name"] for o in find(objs, "CustomResourceDefinition")}
    assert crds == {"dexmodels.dex.dataenginex.io", "dexpipelines.dex.dataenginex.io"}
    role = one(objs, "ClusterRole", "dex-operator")
    assert any("dexmodels/status" in rule["resources"] for rule in role["rules"])
    binding = one(objs, "ClusterRoleBinding", "dex-operator")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "dex-operator", "namespace": "dex-system"}
    ]
    assert one(objs, "ServiceAccount", "dex-operator")["metadata"]["namespace"] == "dex-system"
    deployment = one(objs, "Deployment", "dex-operator")
    assert deployment["metadata"]["namespace"] == "dex-system"
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "dex-operator"
    # The Role reading KServe's config must stay in KServe's namespace.
    assert one(objs, "Role", "dex-operator-kserve-config")["metadata"]["namespace"] == "kserve"


def containers(objs: list[Manifest]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (d["metadata"]["name"], c["name"]): c
        for d in find(objs, "Deployment")
        for key in ("initContainers", "containers")
        for c in d["spec"]["template"]["spec"].get(key, [])
    }


@pytest.mark.parametrize("env", ENVS)
def test_overlay_installs_the_whole_platform(env: str, rendered: Rendered) -> None:
    objs = rendered[env]
    assert {d["metadata"]["name"] for d in find(objs, "Deployment")} == PLATFORM
    services = {o["metadata"]["name"]: o for o in find(objs, "Service")}
    assert set(services) >= {"dex-feast", "dex-feast-redis", "mlflow", "dex-monitor"}
    for deployment in find(objs, "Deployment"):
        # Every Deployment lives in dex-system and every Service selects pods of one.
        assert deployment["metadata"]["namespace"] == "dex-system"
    selected = {s["spec"]["selector"]["app.kubernetes.io/name"] for s in services.values()}
    assert selected <= PLATFORM


@pytest.mark.parametrize("env", ENVS)
def test_operator_and_transformers_name_the_platform_services(env: str, rendered: Rendered) -> None:
    """The URLs the operator is given (and defaults to) are Services this overlay installs,
    on ports those Services expose."""
    objs = rendered[env]
    ports = {
        (s["metadata"]["name"], s["metadata"]["namespace"], p["port"])
        for s in find(objs, "Service")
        for p in s["spec"]["ports"]
    }
    settings = env_of(operator_container(objs))
    defaults = OperatorConfig.model_construct()
    for url in (
        settings["DEX_MLFLOW_URL"],
        settings["DEX_MONITOR_URL"],
        defaults.mlflow_url,
        defaults.monitor_url,
        defaults.feast_feature_server,
        f"grpc://{defaults.feast_registry_server}",
    ):
        host, port = url.split("://")[1].split("/")[0].rsplit(":", 1)
        service, namespace = host.split(".")[:2]
        assert (service, namespace, int(port)) in ports, url


@pytest.mark.parametrize("env", ENVS)
def test_overlay_pins_every_image(env: str, rendered: Rendered) -> None:
    for (deployment, name), container in containers(rendered[env]).items():
        image = container["image"]
        if deployment == "dex-feast-redis":
            assert image.endswith(":dev" if env == "dev" else ":7.2"), image
            continue
        repository = image.rpartition(":")[0].rpartition("/")[2]
        assert image == IMAGES[env].format(name=repository), (deployment, name)
        pull = container["imagePullPolicy"]
        assert pull == ("Never" if env == "dev" else "IfNotPresent"), (deployment, name)


def test_each_environment_runs_a_different_pinned_image() -> None:
    assert len(set(IMAGES.values())) == len(ENVS)
    assert all(":latest" not in image for image in IMAGES.values())


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_shared_environments_keep_mlflow_in_postgres_and_object_storage(
    env: str, rendered: Rendered
) -> None:
    mlflow = containers(rendered[env])[("mlflow", "mlflow")]
    from_secret = {
        e["name"]: e["valueFrom"]["secretKeyRef"] for e in mlflow["env"] if "valueFrom" in e
    }
    assert from_secret == {
        "MLFLOW_BACKEND_STORE_URI": {"name": "mlflow-store", "key": "backend-store-uri"},
        "MLFLOW_ARTIFACTS_DESTINATION": {"name": "mlflow-store", "key": "artifacts-destination"},
    }
    assert one(rendered[env], "Deployment", "mlflow")["spec"]["strategy"]["type"] == (
        "RollingUpdate"
    )


@pytest.mark.parametrize("env", ENVS)
def test_every_object_is_labelled_and_selectors_are_untouched(env: str, rendered: Rendered) -> None:
    for obj in rendered[env]:
        labels = obj["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/part-of") == "dex", obj["metadata"]["name"]
        assert labels.get("dex.dataenginex.io/environment") == env, obj["metadata"]["name"]
    # A Deployment's selector is immutable: overlays must not add labels to it.
    deployment = one(rendered[env], "Deployment", "dex-operator")
    assert deployment["spec"]["selector"] == {
        "matchLabels": {"app.kubernetes.io/name": "dex-operator"}
    }


def test_base_renders_exactly_manifests_default() -> None:
    base = kustomize(KUSTOMIZE / "base")
    default = kustomize(REPO / "manifests" / "default")

    def key(o: Manifest) -> tuple[str, str, str]:
        return (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])

    assert sorted(map(key, base)) == sorted(map(key, default))


@pytest.mark.parametrize("env", ENVS)
def test_operator_env_vars_are_operator_settings(env: str, rendered: Rendered) -> None:
    known = {f"DEX_{name.upper()}" for name in OperatorConfig.model_fields}
    unknown = set(env_of(operator_container(rendered[env]))) - known
    # An unknown name is a typo the operator would silently ignore.
    assert not unknown


def test_dev_debug_logging(rendered: Rendered) -> None:
    assert env_of(operator_container(rendered["dev"]))["DEX_LOG_LEVEL"] == "DEBUG"


@pytest.mark.parametrize("env", ENVS)
def test_no_environment_ships_samples(env: str, rendered: Rendered) -> None:
    # Every sample DexModel starts InferenceServices: samples are applied on purpose only.
    assert not find(rendered[env], "DexModel") + find(rendered[env], "DexPipeline")


def test_prod_is_sized_and_protects_its_crds(rendered: Rendered) -> None:
    objs = rendered["prod"]
    resources = operator_container(objs)["resources"]
    assert resources["requests"] == {"cpu": "500m", "memory": "256Mi"}
    assert resources["limits"] == {"cpu": "2", "memory": "512Mi"}
    for crd in find(objs, "CustomResourceDefinition"):
        options = crd["metadata"]["annotations"]["argocd.argoproj.io/sync-options"]
        assert set(options.split(",")) == {"Prune=false", "Delete=false"}


@pytest.mark.parametrize("env", ENVS)
def test_one_replica_while_the_operator_runs_standalone(env: str, rendered: Rendered) -> None:
    # Two kopf operators without peering reconcile every DexModel twice; revisit the prod
    # overlay (replicas 2) only once the operator gains peering or leader election.
    main = (REPO / "operator" / "dex_operator" / "__main__.py").read_text()
    assert "standalone=True" in main
    deployment = one(rendered[env], "Deployment", "dex-operator")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"


# -------------------------------------------------------------------------------- Argo CD


def test_argocd_cm_holds_exactly_the_lua_files(rendered: Rendered) -> None:
    cm = one(rendered["argocd"], "ConfigMap", "argocd-cm")
    assert cm["metadata"]["namespace"] == "argocd"
    kinds = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        if doc.get("kind") == "CustomResourceDefinition":
            kinds[doc["spec"]["names"]["kind"]] = doc["spec"]["group"]
    assert set(kinds) == {"DexModel", "DexPipeline"}
    expected = {
        f"resource.customizations.health.{group}_{kind}": (
            HEALTH_DIR / f"{kind.lower()}.lua"
        ).read_text()
        for kind, group in kinds.items()
    }
    assert cm["data"] == expected


def applications(rendered: Rendered) -> dict[str, Manifest]:
    apps = find(rendered["argocd"], "Application")
    return {a["spec"]["source"]["path"].rpartition("/")[2]: a for a in apps}


def test_one_application_per_environment(rendered: Rendered) -> None:
    apps = applications(rendered)
    assert set(apps) == set(ENVS)
    project = one(rendered["argocd"], "AppProject", "dex")
    for env, app in apps.items():
        assert app["apiVersion"] == "argoproj.io/v1alpha1"
        assert app["metadata"]["namespace"] == "argocd"
        assert app["spec"]["project"] == "dex"
        source = app["spec"]["source"]
        assert source["path"] == f"kustomize/overlays/{env}"
        assert (REPO / source["path"] / "kustomization.yaml").is_file()
        assert source["repoURL"] in project["spec"]["sourceRepos"]
        assert app["spec"]["destination"] == {"name": env, "namespace": "dex-system"}
        assert "ServerSideApply=true" in app["spec"]["syncPolicy"]["syncOptions"]


def test_sync_policies(rendered: Rendered) -> None:
    apps = applications(rendered)
    assert apps["dev"]["spec"]["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}
    assert "automated" not in apps["prod"]["spec"]["syncPolicy"]
    # Deleting the prod Application must not cascade to the CRDs and every DexModel.
    assert "finalizers" not in apps["prod"]["metadata"]


def test_ignore_differences_cover_only_what_the_operator_writes(rendered: Rendered) -> None:
    for app in applications(rendered).values():
        ignored = {d["kind"]: d for d in app["spec"]["ignoreDifferences"]}
        assert set(ignored) == {"DexModel", "DexPipeline"}
        for rule in ignored.values():
            assert rule["group"] == "dex.dataenginex.io"
            assert rule["jsonPointers"] == ["/status"]
        never_spec = " ".join(ignored["DexModel"]["jqPathExpressions"])
        assert ".spec" not in never_spec
        assert "dex.dataenginex.io/operator" in never_spec  # the finalizer earlier versions added


@pytest.mark.parametrize("env", ENVS)
def test_project_permits_everything_the_overlay_renders(env: str, rendered: Rendered) -> None:
    spec = one(rendered["argocd"], "AppProject", "dex")["spec"]
    cluster_kinds = {(r["group"], r["kind"]) for r in spec["clusterResourceWhitelist"]}
    namespaced_kinds = {(r["group"], r["kind"]) for r in spec["namespaceResourceWhitelist"]}
    destinations = {(d["name"], d["namespace"]) for d in spec["destinations"]}
    for obj in rendered[env]:
        group_kind = (group_of(obj), obj["kind"])
        namespace = obj["metadata"].get("namespace")
        if namespace is None:
            assert group_kind in cluster_kinds, group_kind
        else:
            assert group_kind in namespaced_kinds, group_kind
            assert (env, namespace) in destinations, (env, namespace)
