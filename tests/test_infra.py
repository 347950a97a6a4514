"""The deployment files of infra/: the image, the compose file and the Kubernetes manifests.

Neither Docker nor kubectl nor a cluster is at hand, so the files are parsed and checked for what
would break a deployment: a missing or misspelt field (core Kubernetes objects and every pod
template go through the `kubernetes` client's models, and any key the model does not know is
reported), a name that refers to nothing, and a port, an address, an image or a version that
differs between the Dockerfile, compose, Kubernetes and the service's own defaults.
"""

import json
import re
import shlex
from fnmatch import fnmatch
from pathlib import Path
from urllib.parse import urlsplit

import kubernetes.client
import pytest
import yaml
from croniter import croniter
from kubernetes.client import ApiClient
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from repalign.cli import build_parser
from repalign.spec import parse_spec
from services.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
K8S = INFRA / "k8s"
DOCKERFILE = INFRA / "docker" / "Dockerfile"
REQUIREMENTS = INFRA / "docker" / "requirements.txt"

CLUSTER_SCOPED = {"Namespace", "PersistentVolume", "StorageClass", "ClusterRole"}
CORE_MODELS = {
    ("v1", "Namespace"): "V1Namespace",
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("v1", "Secret"): "V1Secret",
    ("v1", "Service"): "V1Service",
    ("v1", "PersistentVolumeClaim"): "V1PersistentVolumeClaim",
    ("apps/v1", "Deployment"): "V1Deployment",
    ("apps/v1", "StatefulSet"): "V1StatefulSet",
    ("batch/v1", "CronJob"): "V1CronJob",
}
RAY_KINDS = {("ray.io/v1", "RayCluster"), ("ray.io/v1", "RayJob")}
# The fields of KubeRay's ray.io/v1 types (ray-operator/apis/ray/v1/*_types.go): a key outside
# these is a typo that the CRD's schema would prune or refuse.
RAY_CLUSTER_FIELDS = {
    "suspend", "managedBy", "autoscalerOptions", "headServiceAnnotations",
    "enableInTreeAutoscaling", "gcsFaultToleranceOptions", "headGroupSpec", "rayVersion",
    "workerGroupSpecs",
}  # fmt: skip
HEAD_GROUP_FIELDS = {"template", "headService", "enableIngress", "rayStartParams", "serviceType"}
WORKER_GROUP_FIELDS = {
    "suspend", "groupName", "replicas", "minReplicas", "maxReplicas", "idleTimeoutSeconds",
    "rayStartParams", "template", "scaleStrategy", "numOfHosts",
}  # fmt: skip
AUTOSCALER_FIELDS = {
    "resources", "image", "imagePullPolicy", "securityContext", "idleTimeoutSeconds",
    "upscalingMode", "env", "envFrom", "volumeMounts",
}  # fmt: skip
RAY_JOB_FIELDS = {
    "activeDeadlineSeconds", "backoffLimit", "rayClusterSpec", "submitterPodTemplate",
    "metadata", "clusterSelector", "submitterConfig", "managedBy", "deletionPolicy",
    "entrypoint", "runtimeEnvYAML", "jobId", "submissionMode", "entrypointResources",
    "entrypointNumCpus", "entrypointNumGpus", "ttlSecondsAfterFinished",
    "shutdownAfterJobFinishes", "suspend",
}  # fmt: skip


# ---- reading the files ----------------------------------------------------------------------


def _documents(path):
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def render_kustomization(folder):
    """The objects that ``kubectl kustomize folder`` would print, for the subset of kustomize
    that infra/k8s uses: ``resources`` (files), ``namespace`` and ``labels`` (with
    ``includeTemplates`` on the pod templates of core workloads, as kustomize does)."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unsupported = set(kustomization) - {"apiVersion", "kind", "namespace", "labels", "resources"}
    assert not unsupported, f"this renderer does not apply {sorted(unsupported)}"
    objects = []
    for resource in kustomization["resources"]:
        objects += _documents(folder / resource)
    for obj in objects:
        metadata = obj.setdefault("metadata", {})
        if "namespace" in kustomization and obj.get("kind") not in CLUSTER_SCOPED:
            metadata["namespace"] = kustomization["namespace"]
        for label in kustomization.get("labels", []):
            assert not label.get("includeSelectors"), "selectors would change: not rendered"
            metadata.setdefault("labels", {}).update(label["pairs"])
            if label.get("includeTemplates") and (obj["apiVersion"], obj["kind"]) in CORE_MODELS:
                for _, template in pod_templates(obj):
                    template.setdefault("metadata", {}).setdefault("labels", {})
                    template["metadata"]["labels"].update(label["pairs"])
    return objects


def pod_templates(obj):
    """(where, pod template) for each pod template of a workload, Ray's CRDs included."""
    spec = obj.get("spec", {})
    kind = obj["kind"]
    if kind in ("Deployment", "StatefulSet"):
        yield "spec.template", spec["template"]
    elif kind == "CronJob":
        yield "spec.jobTemplate.spec.template", spec["jobTemplate"]["spec"]["template"]
    elif kind == "RayCluster":
        yield from _ray_templates(spec, "spec")
    elif kind == "RayJob":
        yield from _ray_templates(spec["rayClusterSpec"], "spec.rayClusterSpec")
        if "submitterPodTemplate" in spec:
            yield "spec.submitterPodTemplate", spec["submitterPodTemplate"]


def _ray_templates(cluster, where):
    yield f"{where}.headGroupSpec.template", cluster["headGroupSpec"]["template"]
    for i, group in enumerate(cluster["workerGroupSpecs"]):
        yield f"{where}.workerGroupSpecs[{i}].template", group["template"]


OBJECTS = render_kustomization(K8S)
SECRETS = _documents(K8S / "secrets.example.yaml")
COMPOSE = yaml.safe_load((INFRA / "compose.yaml").read_text())
PYPROJECT_TEXT = (ROOT / "pyproject.toml").read_text()


def _object(kind, name):
    found = [o for o in OBJECTS if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name} in infra/k8s, got {len(found)}"
    return found[0]


def _only(kind):
    found = [o for o in OBJECTS if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind} in infra/k8s, got {len(found)}"
    return found[0]


def _object_id(obj):
    return f"{obj['kind']}/{obj['metadata']['name']}"


def _containers(template):
    return template["spec"]["containers"] + template["spec"].get("initContainers", [])


def _env(container):
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def _config_map_data(name):
    return _object("ConfigMap", name)["data"]


def _container_env(container):
    """The container's environment: its envFrom ConfigMaps, then its env values."""
    values = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            values.update(_config_map_data(source["configMapRef"]["name"]))
    values.update(_env(container))
    return values


def _parse_cli(argv):
    """``argv`` (a repalign command line) parsed by the real ``repalign`` parser."""
    assert argv[0] == "repalign", argv
    return build_parser().parse_args(argv[1:])


def _port_number(port, container):
    """A probe's or a Service's port, by number or by the container port's name."""
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}
    assert port in named, f"port {port!r} is not a named port of container {container['name']}"
    return named[port]


def _service_default_port():
    return build_parser().parse_args(["serve"]).port


def _pyproject_version():
    return re.search(r'^version = "([^"]+)"', PYPROJECT_TEXT, re.M).group(1)


def _pyproject_dependencies():
    block = re.search(r"^dependencies = \[(.*?)^\]", PYPROJECT_TEXT, re.M | re.S).group(1)
    return [Requirement(r) for r in re.findall(r'^\s*"([^"]+)",', block, re.M)]


def _requirements():
    pins = {}
    for line in REQUIREMENTS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            specifiers = list(requirement.specifier)
            assert len(specifiers) == 1 and specifiers[0].operator == "==", f"not pinned: {line}"
            pins[canonicalize_name(requirement.name)] = specifiers[0].version
    return pins


def _image_tag(image):
    """The tag of ``image`` (registry ports and digests aside), or None."""
    name = image.split("@")[0].rsplit("/", 1)[-1]
    return name.split(":", 1)[1] if ":" in name else None


def _is_pinned(image):
    tag = _image_tag(image)
    return tag is not None and tag != "latest" and re.search(r"\d", tag) is not None


# ---- the Dockerfile -------------------------------------------------------------------------


def dockerfile_instructions():
    """(INSTRUCTION, arguments) of each Dockerfile instruction, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, arguments = line.partition(" ")
            result.append((instruction.upper(), arguments.strip()))
    return result


def _stages():
    stages = []
    for instruction, arguments in dockerfile_instructions():
        if instruction == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instruction, arguments))
    return stages


def _dockerfile_user():
    users = [a for i, a in _stages()[-1] if i == "USER"]
    assert users, "the final stage sets no USER: the image would run as root"
    return users[-1]


def _exec_form(arguments):
    return json.loads(arguments)


def test_dockerfile_is_multi_stage_from_pinned_images():
    froms = [a.split() for i, a in dockerfile_instructions() if i == "FROM"]
    assert len(froms) >= 2, "expected a builder stage and a runtime stage"
    for words in froms:
        image = words[0]
        assert _is_pinned(image), f"FROM {image}: pin a version tag (not latest, not none)"
    stage_names = {words[2] for words in froms if len(words) == 3 and words[1].upper() == "AS"}
    copies = [a for i, a in _stages()[-1] if i == "COPY" and a.startswith("--from=")]
    assert copies, "the runtime stage copies nothing from an earlier stage"
    for copy in copies:
        assert copy.split()[0].removeprefix("--from=") in stage_names, copy


def test_dockerfile_runs_as_the_numeric_non_root_user_of_the_kubernetes_pods():
    user = _dockerfile_user().split(":")[0]
    assert user.isdigit() and int(user) != 0, f"USER {user}: a numeric uid other than 0"
    for obj in OBJECTS:
        for where, template in pod_templates(obj):
            if any(c["image"].startswith("repalign:") for c in _containers(template)):
                context = template["spec"].get("securityContext", {})
                assert context.get("runAsNonRoot") is True, f"{_object_id(obj)} {where}"
                assert context.get("runAsUser") == int(user), f"{_object_id(obj)} {where}"


def test_dockerfile_exposes_the_service_port_checks_healthz_and_serves_by_default():
    port = _service_default_port()
    exposed = [a for i, a in _stages()[-1] if i == "EXPOSE"]
    assert exposed == [str(port)]
    healthchecks = [a for i, a in _stages()[-1] if i == "HEALTHCHECK"]
    assert len(healthchecks) == 1 and f"127.0.0.1:{port}/healthz" in healthchecks[0]
    [cmd] = [a for i, a in _stages()[-1] if i == "CMD"]
    args = _parse_cli(_exec_form(cmd))
    assert (args.command, args.host, args.port) == ("serve", "0.0.0.0", port)
    assert args.store_root == ["/data/stores"]


def test_torch_pin_is_the_same_in_pyproject_the_dockerfile_and_the_requirements():
    [pyproject_torch] = [r for r in _pyproject_dependencies() if r.name == "torch"]
    pinned = str(pyproject_torch.specifier)
    assert pinned.startswith("==")
    dockerfile_pins = re.findall(r"torch(==[\w.]+)", DOCKERFILE.read_text())
    assert dockerfile_pins and set(dockerfile_pins) == {pinned}
    assert "==" + _requirements()["torch"] == pinned


def test_image_requirements_satisfy_every_pyproject_dependency():
    pins = _requirements()
    for requirement in _pyproject_dependencies():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is not pinned in {REQUIREMENTS.name}"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{name}=={pins[name]} does not satisfy pyproject's {requirement}"
        )
    # the service on PostgreSQL and MLflow on S3 need these beyond pyproject's dependencies
    assert {"psycopg", "psycopg-binary", "boto3"} <= set(pins)


def _dockerignore_excludes(path):
    """Whether .dockerignore keeps ``path`` (relative, '/'-separated) out of the context:
    the last matching pattern wins, '!' re-includes, a pattern matching a folder matches
    what lies below it."""
    excluded = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.removeprefix("!").rstrip("/")
        for candidate in prefixes:
            if fnmatch(candidate, pattern) or (
                pattern.startswith("**/") and fnmatch(candidate.rsplit("/", 1)[-1], pattern[3:])
            ):
                excluded = not negated
                break
    return excluded


def test_dockerignore_keeps_out_the_venv_git_and_caches_but_not_what_the_image_copies():
    for path in [".venv/bin/python", ".git/HEAD", "mlruns/0/meta.yaml", "mlflow.db",
                 "tests/test_infra.py", "benchmarks/engine.py", "infra/.env",
                 "infra/repalign.env", "repalign/__pycache__/cli.cpython-311.pyc",
                 ".pytest_cache/v/cache", "repalign.egg-info/PKG-INFO"]:  # fmt: skip
        assert _dockerignore_excludes(path), f"{path} would be sent to the build context"
    for instruction, arguments in dockerfile_instructions():
        if instruction == "COPY" and not arguments.startswith("--from="):
            for source in arguments.split()[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: no such path"
                assert not _dockerignore_excludes(source), f"COPY {source}: .dockerignore drops it"


# ---- Kubernetes -----------------------------------------------------------------------------


def test_kustomization_lists_files_that_exist_and_no_duplicate_objects():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file(), f"kustomization.yaml lists a missing file {resource}"
    ids = [_object_id(o) for o in OBJECTS]
    assert len(ids) == len(set(ids)), ids
    assert "secrets.example.yaml" not in kustomization["resources"]  # apply -k keeps real ones


@pytest.mark.parametrize("obj", OBJECTS + SECRETS, ids=_object_id)
def test_every_object_has_its_identity_namespace_and_labels(obj):
    assert obj.get("apiVersion") and obj.get("kind") and obj["metadata"].get("name")
    labels = obj["metadata"].get("labels", {})
    assert labels.get("app.kubernetes.io/part-of") == "repalign"
    if obj["kind"] != "Namespace":
        assert obj["metadata"].get("namespace") == "repalign"
        assert labels.get("app.kubernetes.io/name") and labels.get("app.kubernetes.io/component")
    known = set(CORE_MODELS) | RAY_KINDS
    assert (obj["apiVersion"], obj["kind"]) in known, f"no check for {_object_id(obj)}"


def _unknown_keys(given, known, where=""):
    """Keys of ``given`` that the model's serialization ``known`` lost: fields the model does
    not have, i.e. misspelt or misplaced ones."""
    if isinstance(given, dict):
        for key, value in given.items():
            if not isinstance(known, dict) or key not in known:
                yield f"{where}.{key}"
            else:
                yield from _unknown_keys(value, known[key], f"{where}.{key}")
    elif isinstance(given, list) and isinstance(known, list):
        for i, (a, b) in enumerate(zip(given, known, strict=True)):
            yield from _unknown_keys(a, b, f"{where}[{i}]")


def _validate_model(content, model):
    """Load ``content`` into the kubernetes client's (pydantic) ``model``, which checks
    required fields and types (quantities as strings, ports as numbers or names); the model
    drops keys it does not know, so any key missing from its serialization is reported."""
    instance = getattr(kubernetes.client, model).from_dict(content)
    known = ApiClient().sanitize_for_serialization(instance)
    assert list(_unknown_keys(content, known)) == []


@pytest.mark.parametrize(
    "obj", [o for o in OBJECTS + SECRETS if o["kind"] not in ("RayCluster", "RayJob")],
    ids=_object_id,
)  # fmt: skip
def test_core_objects_are_valid_kubernetes_models(obj):
    _validate_model(obj, CORE_MODELS[(obj["apiVersion"], obj["kind"])])


TEMPLATES = [(obj, where, t) for obj in OBJECTS for where, t in pod_templates(obj)]


@pytest.mark.parametrize(
    ("obj", "where", "template"), TEMPLATES, ids=[f"{_object_id(o)}:{w}" for o, w, _ in TEMPLATES]
)
def test_pod_templates_are_valid_and_every_container_is_pinned_with_requests(obj, where, template):
    _validate_model(template, "V1PodTemplateSpec")
    for container in _containers(template):
        assert _is_pinned(container["image"]), f"{container['name']}: {container['image']}"
        requests = container.get("resources", {}).get("requests", {})
        assert {"cpu", "memory"} <= set(requests), f"{container['name']} requests {requests}"
        limits = container.get("resources", {}).get("limits", {})
        assert "memory" in limits, f"{container['name']}: no memory limit"


def test_the_repalign_image_is_the_same_everywhere_and_tagged_with_the_project_version():
    expected = f"repalign:{_pyproject_version()}"
    images = {c["image"] for _, _, t in TEMPLATES for c in _containers(t)}
    images |= {s["image"] for s in COMPOSE["services"].values()}
    assert {i for i in images if i.split(":")[0] == "repalign"} == {expected}


def _ray_clusters():
    cluster = _only("RayCluster")
    job = _only("RayJob")
    return [("RayCluster", cluster["spec"]), ("RayJob", job["spec"]["rayClusterSpec"])]


@pytest.mark.parametrize(("owner", "cluster"), _ray_clusters(), ids=["RayCluster", "RayJob"])
def test_ray_clusters_have_a_head_and_workers_within_their_bounds(owner, cluster):
    assert cluster["rayVersion"] == _requirements()["ray"], "the image's Ray must match"
    head = cluster["headGroupSpec"]
    assert isinstance(head["rayStartParams"], dict) and head["template"]["spec"]["containers"]
    ports = {p["containerPort"] for p in head["template"]["spec"]["containers"][0]["ports"]}
    assert {6379, 8265, 10001} <= ports
    assert cluster["workerGroupSpecs"], f"{owner}: no worker group"
    for group in cluster["workerGroupSpecs"]:
        assert group["groupName"] and isinstance(group["rayStartParams"], dict)
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], group
    assert isinstance(cluster.get("enableInTreeAutoscaling"), bool)


@pytest.mark.parametrize(("owner", "cluster"), _ray_clusters(), ids=["RayCluster", "RayJob"])
def test_ray_clusters_use_only_kuberay_v1_fields(owner, cluster):
    assert set(cluster) <= RAY_CLUSTER_FIELDS, set(cluster) - RAY_CLUSTER_FIELDS
    head = cluster["headGroupSpec"]
    assert {"template", "rayStartParams"} <= set(head) <= HEAD_GROUP_FIELDS, set(head)
    required = {"groupName", "minReplicas", "maxReplicas", "rayStartParams", "template"}
    for group in cluster["workerGroupSpecs"]:
        assert required <= set(group) <= WORKER_GROUP_FIELDS, set(group)
    for params in [head["rayStartParams"]] + [
        g["rayStartParams"] for g in cluster["workerGroupSpecs"]
    ]:
        # map[string]string: `num-cpus: 0` unquoted would be refused
        assert all(isinstance(v, str) for v in params.values()), params
    options = cluster.get("autoscalerOptions", {})
    assert set(options) <= AUTOSCALER_FIELDS, set(options) - AUTOSCALER_FIELDS
    assert options.get("upscalingMode", "Default") in ("Default", "Aggressive", "Conservative")
    if "resources" in options:
        _validate_model(options["resources"], "V1ResourceRequirements")
        assert {"cpu", "memory"} <= set(options["resources"]["requests"])


def test_rayjob_uses_only_kuberay_v1_fields():
    spec = _only("RayJob")["spec"]
    assert set(spec) <= RAY_JOB_FIELDS, set(spec) - RAY_JOB_FIELDS


def test_the_service_cluster_autoscales():
    spec = _only("RayCluster")["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    assert any(g["maxReplicas"] > g["minReplicas"] for g in spec["workerGroupSpecs"])


def _mounts(template, container=0):
    """mount path -> (volume kind, the volume's source name) for one container."""
    volumes = {v["name"]: v for v in template["spec"].get("volumes", [])}
    result = {}
    for mount in template["spec"]["containers"][container].get("volumeMounts", []):
        volume = volumes.get(mount["name"], {})
        if "configMap" in volume:
            result[mount["mountPath"]] = ("configMap", volume["configMap"]["name"])
        elif "persistentVolumeClaim" in volume:
            result[mount["mountPath"]] = ("pvc", volume["persistentVolumeClaim"]["claimName"])
        else:
            result[mount["mountPath"]] = ("other", mount["name"])
    return result


def _spec_mount(template, argv_path):
    """The ConfigMap key that ``argv_path`` reads inside ``template``'s first container."""
    folder, _, key = argv_path.rpartition("/")
    kind, name = _mounts(template)[folder]
    assert kind == "configMap", f"{folder} is not a ConfigMap mount"
    assert key in _config_map_data(name), f"ConfigMap {name} has no key {key}"
    return _config_map_data(name)[key]


def test_rayjob_runs_repalign_run_on_the_mounted_spec_and_starts_suspended():
    job = _only("RayJob")["spec"]
    args = _parse_cli(shlex.split(job["entrypoint"]))
    assert args.command == "run"
    spec = _spec_mount(job["rayClusterSpec"]["headGroupSpec"]["template"], args.spec)
    parse_spec(yaml.safe_load(spec), kind="alignment")
    # a template: applying the kustomization must not start a job; KubeRay needs shutdown
    # after the job for a suspended RayJob
    assert job["suspend"] is True and job["shutdownAfterJobFinishes"] is True
    env = yaml.safe_load(job["runtimeEnvYAML"])["env_vars"]
    settings = _config_map_data("repalign-settings")
    assert env["MLFLOW_TRACKING_URI"] == settings["REPALIGN_TRACKING_URI"]


def test_job_spec_reads_under_the_store_root_and_writes_under_the_state_dir():
    settings = _config_map_data("repalign-settings")
    spec = parse_spec(yaml.safe_load(_config_map_data("repalign-job-spec")["job.yaml"]))
    [root] = json.loads(settings["REPALIGN_STORE_ROOTS"])
    assert spec.store.startswith(root + "/")
    assert spec.out.startswith(settings["REPALIGN_STATE_DIR"] + "/")


def test_nightly_cronjob_never_overlaps_starts_suspended_and_runs_repalign_nightly():
    cron = _only("CronJob")["spec"]
    assert croniter.is_valid(cron["schedule"])
    assert cron["concurrencyPolicy"] == "Forbid" and cron["suspend"] is True
    template = cron["jobTemplate"]["spec"]["template"]
    [container] = template["spec"]["containers"]
    script = container["command"][-1]
    runs = [line.split() for line in script.splitlines() if "repalign nightly" in line]
    assert runs, "the CronJob does not run repalign nightly"
    for words in runs:
        argv = [w for w in words[words.index("repalign") :] if not w.startswith('"')]
        argv = [w for w in argv if w not in ("--out", "--previous")]
        args = _parse_cli(argv)
        assert args.command == "nightly" and args.quiet
        parse_spec(yaml.safe_load(_spec_mount(template, args.spec)), kind="alignment")
    settings = _config_map_data("repalign-settings")
    env = _env(container)
    assert env["RAY_ADDRESS"] == settings["REPALIGN_RAY_ADDRESS"]
    assert env["MLFLOW_TRACKING_URI"] == settings["REPALIGN_TRACKING_URI"]
    assert "$$(date" in script  # Kubernetes would otherwise try to expand $(date ...)


def _service_deployment():
    deployment = _object("Deployment", "repalign")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return deployment, container


def test_service_deployment_serves_on_its_port_and_probes_healthz_there():
    deployment, container = _service_deployment()
    args = _parse_cli(container["command"])
    assert args.command == "serve" and args.host == "0.0.0.0"
    assert args.port == _service_default_port()
    for probe in ("readinessProbe", "livenessProbe"):
        check = container[probe]["httpGet"]
        assert check["path"] == "/healthz"
        assert _port_number(check["port"], container) == args.port, probe
    service = _object("Service", "repalign")
    [port] = service["spec"]["ports"]
    assert _port_number(port["targetPort"], container) == args.port
    assert deployment["spec"]["replicas"] == 1  # one scheduler: two would both run schedules
    assert deployment["spec"]["strategy"]["type"] == "Recreate"


def test_service_settings_are_known_and_tokens_come_from_a_secret():
    deployment, container = _service_deployment()
    env = _container_env(container)
    fields = {f"REPALIGN_{name.upper()}" for name in Settings.model_fields}
    unknown = {k for k in env if k.startswith("REPALIGN_")} - fields
    assert not unknown, f"not settings of services/settings.py: {unknown}"
    tokens = [e for e in container["env"] if e["name"] == "REPALIGN_API_TOKENS"]
    assert tokens and "secretKeyRef" in tokens[0]["valueFrom"] and "value" not in tokens[0]
    roots = json.loads(env["REPALIGN_STORE_ROOTS"])
    mounts = _mounts(deployment["spec"]["template"])
    assert mounts[roots[0]] == ("pvc", "repalign-stores")
    assert mounts[env["REPALIGN_STATE_DIR"]] == ("pvc", "repalign-state")


def test_ray_pods_mount_the_stores_and_state_at_the_service_paths():
    # the service's jobs pass absolute paths to the actors, and the actors checkpoint under
    # the job's folder: the Ray pods must see both volumes where the service does
    env = _container_env(_service_deployment()[1])
    [root] = json.loads(env["REPALIGN_STORE_ROOTS"])
    for owner, cluster in _ray_clusters():
        groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
        for group in groups:
            mounts = _mounts(group["template"])
            assert mounts[root] == ("pvc", "repalign-stores"), owner
            assert mounts[env["REPALIGN_STATE_DIR"]] == ("pvc", "repalign-state"), owner


def test_addresses_in_the_settings_point_at_the_rendered_services():
    settings = _config_map_data("repalign-settings")
    ray = urlsplit(settings["REPALIGN_RAY_ADDRESS"])
    cluster = _only("RayCluster")
    assert ray.scheme == "ray"
    assert ray.hostname == f"{cluster['metadata']['name']}-head-svc"  # KubeRay's naming
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert ray.port == _port_number("client", head)
    tracking = urlsplit(settings["REPALIGN_TRACKING_URI"])
    mlflow = _object("Service", tracking.hostname)
    [port] = mlflow["spec"]["ports"]
    assert tracking.port == port["port"]
    _, container = _service_deployment()
    database = urlsplit(_env(container)["REPALIGN_DATABASE_URL"])
    postgres = _object("Service", database.hostname)
    assert database.port == postgres["spec"]["ports"][0]["port"]


def _mlflow_container():
    template = _object("Deployment", "repalign-mlflow")["spec"]["template"]
    [container] = template["spec"]["containers"]
    return container


def _mlflow_port(command):
    """The port of an ``mlflow server`` command line (--port N or --port=N)."""
    assert command[:2] == ["mlflow", "server"], command
    text = " ".join(command[2:]).replace("=", " ").split()
    return int(text[text.index("--port") + 1])


def test_mlflow_listens_where_its_service_and_probes_point_and_accepts_the_jobs_host():
    container = _mlflow_container()
    port = _mlflow_port(container["command"])
    [service_port] = _object("Service", "repalign-mlflow")["spec"]["ports"]
    assert _port_number(service_port["targetPort"], container) == port
    allowed = _container_env(container)["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
    tracking = urlsplit(_config_map_data("repalign-settings")["REPALIGN_TRACKING_URI"])
    assert tracking.netloc in allowed  # MLflow refuses other Host headers
    for probe in ("readinessProbe", "livenessProbe"):
        check = container[probe]["httpGet"]
        assert check["path"] == "/health"  # the one route that answers any Host header
        assert _port_number(check["port"], container) == port
    backend = _container_env(container)["MLFLOW_BACKEND_STORE_URI"]
    assert backend.startswith("postgresql+psycopg://") and "$(POSTGRES_PASSWORD)" in backend


def test_references_to_config_maps_secrets_and_claims_resolve():
    secrets = {s["metadata"]["name"]: s["stringData"] for s in SECRETS}
    claims = {o["metadata"]["name"] for o in OBJECTS if o["kind"] == "PersistentVolumeClaim"}
    for obj, where, template in TEMPLATES:
        claims_here = claims | {
            t["metadata"]["name"] for t in obj["spec"].get("volumeClaimTemplates", [])
        }
        for container in _containers(template):
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    _config_map_data(source["configMapRef"]["name"])
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secrets
            for variable in container.get("env", []):
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secrets.get(ref["name"], {}), f"{where}: {ref}"
            mounted = {v["name"] for v in template["spec"].get("volumes", [])} | claims_here
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in mounted, f"{_object_id(obj)} {where}: {mount['name']}"
        for volume in template["spec"].get("volumes", []):
            if "configMap" in volume:
                _config_map_data(volume["configMap"]["name"])
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims_here


def test_services_select_pods_that_have_the_target_port():
    for service in (o for o in OBJECTS if o["kind"] == "Service"):
        selector = service["spec"]["selector"]
        matches = [
            t for _, _, t in TEMPLATES
            if selector.items() <= t.get("metadata", {}).get("labels", {}).items()
        ]  # fmt: skip
        assert matches, f"{_object_id(service)} selects no pod template"
        for port in service["spec"]["ports"]:
            for template in matches:
                _port_number(port["targetPort"], template["spec"]["containers"][0])


def test_workload_selectors_match_their_own_templates():
    for obj in OBJECTS:
        if obj["kind"] in ("Deployment", "StatefulSet"):
            selector = obj["spec"]["selector"]["matchLabels"]
            labels = obj["spec"]["template"]["metadata"]["labels"]
            assert selector.items() <= labels.items(), _object_id(obj)


# ---- compose --------------------------------------------------------------------------------

SERVICES = COMPOSE["services"]


def _compose_env(service):
    environment = SERVICES[service].get("environment", {})
    assert isinstance(environment, dict), f"{service}: write environment as a mapping"
    return environment


def _published(service):
    """container port -> host port of a compose service's ``ports``."""
    result = {}
    for entry in SERVICES[service].get("ports", []):
        *host, container = str(entry).split(":")
        result[int(container)] = int(host[-1])
    return result


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_compose_services_have_an_image_and_a_healthcheck(name):
    service = SERVICES[name]
    assert "image" in service or "build" in service
    if "image" in service:
        assert _is_pinned(service["image"]), service["image"]
    test = service.get("healthcheck", {}).get("test")
    assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name}: no healthcheck"
    for other, condition in service.get("depends_on", {}).items():
        assert other in SERVICES, f"{name} depends on an unknown service {other}"
        assert condition["condition"] in (
            "service_started", "service_healthy", "service_completed_successfully"
        )  # fmt: skip
        if condition["condition"] == "service_healthy":
            assert "healthcheck" in SERVICES[other]


def test_compose_one_shot_services_are_waited_for_until_they_succeed():
    one_shot = {n for n, s in SERVICES.items() if s.get("restart") == "no"}
    assert one_shot, "the bucket-creating init container is missing"
    for name in one_shot:
        waiting = [
            n for n, s in SERVICES.items()
            if s.get("depends_on", {}).get(name, {}).get("condition")
            == "service_completed_successfully"
        ]  # fmt: skip
        assert waiting, f"nothing waits for {name} to finish"


def test_compose_volumes_are_named_or_files_of_infra():
    declared = set(COMPOSE["volumes"])
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (INFRA / source).is_file(), f"{name}: {source} does not exist"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"


def test_compose_repalign_service_serves_on_the_default_port_of_the_image():
    service = SERVICES["repalign"]
    assert service["build"]["dockerfile"] == "infra/docker/Dockerfile"
    assert (INFRA / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
    args = _parse_cli(service["command"])
    port = _service_default_port()
    assert args.command == "serve" and args.port == port and args.host == "0.0.0.0"
    assert port in _published("repalign")
    [exposed] = [a for i, a in _stages()[-1] if i == "EXPOSE"]
    assert int(exposed) == port
    _, container = _service_deployment()
    assert _parse_cli(container["command"]).port == port
    same_image = [n for n, s in SERVICES.items() if s.get("image") == service["image"]]
    for name in set(same_image) - {"repalign"}:  # built once by the repalign service, never pulled
        assert SERVICES[name].get("pull_policy") == "never", name


def test_compose_service_settings_are_known_and_point_at_compose_services():
    env = _compose_env("repalign")
    fields = {f"REPALIGN_{name.upper()}" for name in Settings.model_fields}
    assert set(env) <= fields, set(env) - fields
    assert "REPALIGN_API_TOKENS" not in env, "tokens come from repalign.env, not compose.yaml"
    [env_file] = SERVICES["repalign"]["env_file"]
    assert env_file["path"] == "./repalign.env"
    example = (INFRA / "repalign.env.example").read_text()
    assert re.search(r"^REPALIGN_API_TOKENS=$", example, re.M)
    ray = urlsplit(env["REPALIGN_RAY_ADDRESS"])
    head_command = " ".join(SERVICES[ray.hostname]["command"])
    assert f"--ray-client-server-port={ray.port}" in head_command
    tracking = urlsplit(env["REPALIGN_TRACKING_URI"])
    assert tracking.port == _mlflow_port(SERVICES[tracking.hostname]["command"])
    database = urlsplit(re.sub(r"\$\{[^}]*\}", "secret", env["REPALIGN_DATABASE_URL"]))
    assert database.hostname in SERVICES and database.path == "/repalign"
    mounts = dict(v.split(":")[1::-1] for v in SERVICES["repalign"]["volumes"])
    assert mounts[env["REPALIGN_STATE_DIR"]] == "repalign-state"
    assert mounts[_parse_cli(SERVICES["repalign"]["command"]).store_root[0]] == "stores"


def test_compose_ray_workers_join_the_head_and_share_its_volumes():
    worker = SERVICES["ray-worker"]
    assert worker["deploy"]["replicas"] == 2
    address = next(a for a in worker["command"] if a.startswith("--address="))
    host, port = address.removeprefix("--address=").split(":")
    assert host in SERVICES and f"--port={port}" in SERVICES[host]["command"]
    assert sorted(worker["volumes"]) == sorted(SERVICES[host]["volumes"])
    service_mounts = {v.split(":")[1]: v.split(":")[0] for v in SERVICES["repalign"]["volumes"]}
    for volume in worker["volumes"]:
        source, target = volume.split(":")[:2]
        assert service_mounts[target] == source, f"the service sees {target} elsewhere"


def test_compose_mlflow_matches_kubernetes_port_and_accepts_its_clients_host():
    port = _mlflow_port(SERVICES["mlflow"]["command"])
    assert port == _mlflow_port(_mlflow_container()["command"])
    assert port in _published("mlflow")
    allowed = _compose_env("mlflow")["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
    assert urlsplit(_compose_env("repalign")["REPALIGN_TRACKING_URI"]).netloc in allowed
    assert f"127.0.0.1:{port}" in allowed  # the published port, from the host
    assert f"127.0.0.1:{port}/health" in " ".join(SERVICES["mlflow"]["healthcheck"]["test"])
    bucket = _compose_env("mlflow")["MLFLOW_ARTIFACTS_DESTINATION"].removeprefix("s3://")
    assert f"local/{bucket}" in " ".join(SERVICES["minio-init"]["entrypoint"])
    postgres = _object("StatefulSet", "repalign-postgres")["spec"]["template"]
    assert SERVICES["postgres"]["image"] == postgres["spec"]["containers"][0]["image"]


def test_compose_secrets_are_interpolated_and_listed_in_the_env_example():
    text = (INFRA / "compose.yaml").read_text()
    example = (INFRA / "env.example").read_text()
    for name, service in SERVICES.items():
        for key, value in service.get("environment", {}).items():
            literal = re.sub(r"\$\{[^}]*\}", "", str(value))  # what compose does not fill in
            if re.search(r"PASSWORD|SECRET|TOKEN|ACCESS_KEY", key):
                assert literal == "", f"{name}.{key} is written in compose.yaml"
            if "://" in literal and "@" in literal:  # a URL with credentials
                assert re.search(r":\$\{\w+[^}]*\}@", str(value)), f"{name}.{key}: a password"
    for variable in set(re.findall(r"\$\{(\w+)", text)):
        assert re.search(rf"^{variable}=", example, re.M), f"{variable} is not in env.example"
    ignored = (INFRA / ".gitignore").read_text().split()
    assert {".env", "repalign.env"} <= set(ignored)
