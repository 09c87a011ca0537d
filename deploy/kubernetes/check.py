#!/usr/bin/env python3
"""Consistency checks of the Kubernetes manifests in this directory.

A schema validator sees one object at a time; what breaks a deployment of cronbyte is
usually between objects, or between an object and cronbyte's own config: a volume naming a
Secret key that does not exist, a probe on a port nobody declared, a Service whose selector
misses the pod, a `*_file` path in cronbyte.toml that no mount provides. This script checks
those, offline, with PyYAML and the standard library.

    check.py [DIR] [--config-out OUT]

--config-out writes the ConfigMap's cronbyte.toml to OUT/cronbyte.toml with every
/etc/cronbyte/secrets/ path moved under OUT/secrets/ (where it creates placeholder files), so
that `cronbyte check --config OUT/cronbyte.toml` can judge it on a machine without the pod.

Exits 1 with one line per problem, 0 when all is consistent.
"""

from __future__ import annotations

import argparse
import posixpath
import sys
import tomllib
from pathlib import Path

import yaml

APP = "cronbyte"
NAME_LABEL = "app.kubernetes.io/name"
SECRETS_DIR = "/etc/cronbyte/secrets/"

# The kinds this directory ships, each with the only apiVersion it may use.
KNOWN_KINDS = {
    "ConfigMap": "v1",
    "Secret": "v1",
    "PersistentVolumeClaim": "v1",
    "Service": "v1",
    "Deployment": "apps/v1",
    "ServiceMonitor": "monitoring.coreos.com/v1",
}


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping: plain YAML keeps the last
    silently, and Kubernetes would apply a manifest nobody meant."""


def _mapping_without_duplicates(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates
)


class Problems:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.lines.append(f"{where}: {message}")

    def require(self, condition: bool, where: str, message: str) -> bool:
        if not condition:
            self.add(where, message)
        return condition


def dig(obj, *path, default=None):
    """obj[path[0]][path[1]]..., or default when any step is missing."""
    for step in path:
        if isinstance(obj, dict) and step in obj:
            obj = obj[step]
        elif isinstance(obj, list) and isinstance(step, int) and 0 <= step < len(obj):
            obj = obj[step]
        else:
            return default
    return obj


def load(directory: Path, p: Problems):
    """The kustomization and every resource it lists, as (file, object) pairs."""
    kustomization_path = directory / "kustomization.yaml"
    try:
        kustomization = yaml.load(kustomization_path.read_text(), Loader=StrictLoader)
    except (OSError, yaml.YAMLError) as e:
        p.add(str(kustomization_path), f"cannot load: {e}")
        return None, []
    where = kustomization_path.name
    p.require(
        dig(kustomization, "kind") == "Kustomization"
        and str(dig(kustomization, "apiVersion", default="")).startswith(
            "kustomize.config.k8s.io/"
        ),
        where,
        "expected kind Kustomization of kustomize.config.k8s.io",
    )
    # A hardcoded namespace would pin every install to it; the base stays neutral.
    p.require("namespace" not in kustomization, where, "must not set a namespace")
    listed = dig(kustomization, "resources", default=[]) or []

    on_disk = sorted(
        f.name
        for f in directory.iterdir()
        if f.suffix in (".yaml", ".yml") and f.name != kustomization_path.name
    )
    for name in on_disk:
        p.require(name in listed, where, f"{name} is in the directory but not in resources")
    resources = []
    for name in listed:
        path = directory / name
        if not p.require(path.is_file(), where, f"resources lists {name}, which does not exist"):
            continue
        try:
            docs = [
                d for d in yaml.load_all(path.read_text(), Loader=StrictLoader) if d is not None
            ]
        except yaml.YAMLError as e:
            p.add(name, f"not valid YAML: {e}")
            continue
        p.require(bool(docs), name, "holds no object")
        resources.extend((name, doc) for doc in docs)
    return kustomization, resources


def check_common(name: str, obj, p: Problems) -> None:
    if not p.require(isinstance(obj, dict), name, "is not a mapping"):
        return
    kind = obj.get("kind")
    api = obj.get("apiVersion")
    where = f"{name} ({kind}/{dig(obj, 'metadata', 'name')})"
    if p.require(kind in KNOWN_KINDS, name, f"unexpected kind {kind!r}"):
        p.require(
            api == KNOWN_KINDS[kind],
            where,
            f"apiVersion {api!r}, expected {KNOWN_KINDS[kind]!r}",
        )
    p.require(bool(dig(obj, "metadata", "name")), where, "metadata.name is missing")
    p.require(
        dig(obj, "metadata", "namespace") is None,
        where,
        "metadata.namespace is set; the manifests stay namespace-neutral",
    )
    p.require(
        dig(obj, "metadata", "labels", NAME_LABEL) == APP,
        where,
        f"metadata.labels.{NAME_LABEL} must be {APP!r}",
    )


def selects(selector: dict | None, labels: dict | None) -> bool:
    """Whether a non-empty matchLabels-style selector matches labels."""
    if not selector:
        return False
    labels = labels or {}
    return all(labels.get(k) == v for k, v in selector.items())


def secret_keys(secret) -> set[str]:
    return set((secret.get("data") or {}).keys()) | set((secret.get("stringData") or {}).keys())


def mounted_files(deployment, container, by_kind, p: Problems, where: str):
    """{absolute path in the container: (kind, object name, key)} of the API-data files the
    container sees, checking every referenced object and key on the way."""
    volumes = {v.get("name"): v for v in pod_volumes(deployment)}
    files: dict[str, tuple[str, str, str]] = {}

    def source_files(kind: str, ref: dict, base: str) -> None:
        obj_name = ref.get("name")
        objects = by_kind.get(kind, {})
        if not p.require(
            obj_name in objects,
            where,
            f"volume refers to {kind} {obj_name!r}, which is not in the manifests",
        ):
            return
        obj = objects[obj_name]
        keys = secret_keys(obj) if kind == "Secret" else set((obj.get("data") or {}).keys())
        items = ref.get("items")
        if items is None:
            for key in keys:
                files[posixpath.join(base, key)] = (kind, obj_name, key)
            return
        for item in items:
            key = item.get("key")
            p.require(key in keys, where, f"{kind} {obj_name!r} has no key {key!r}")
            files[posixpath.normpath(posixpath.join(base, item.get("path", key)))] = (
                kind,
                obj_name,
                key,
            )

    for mount in container.get("volumeMounts") or []:
        vname = mount.get("name")
        volume = volumes.get(vname)
        if not p.require(volume is not None, where, f"volumeMount {vname!r} names no volume"):
            continue
        base = mount.get("mountPath", "")
        if "configMap" in volume:
            source_files("ConfigMap", volume["configMap"], base)
        elif "secret" in volume:
            secret = volume["secret"]
            source_files(
                "Secret", {"name": secret.get("secretName"), "items": secret.get("items")}, base
            )
        elif "projected" in volume:
            for source in dig(volume, "projected", "sources", default=[]) or []:
                if "configMap" in source:
                    source_files("ConfigMap", source["configMap"], base)
                elif "secret" in source:
                    source_files("Secret", source["secret"], base)
    mounted = {m.get("name") for m in container.get("volumeMounts") or []}
    for vname, volume in volumes.items():
        p.require(vname in mounted, where, f"volume {vname!r} is never mounted")
        claim = dig(volume, "persistentVolumeClaim", "claimName")
        if claim is not None:
            p.require(
                claim in by_kind.get("PersistentVolumeClaim", {}),
                where,
                f"volume {vname!r} claims {claim!r}, which is not in the manifests",
            )
    return files


def persistent_mounts(deployment, container) -> list[str]:
    """Where the container can write files that outlive the pod."""
    volumes = {v.get("name"): v for v in pod_volumes(deployment)}
    return [
        mount.get("mountPath", "")
        for mount in container.get("volumeMounts") or []
        if not mount.get("readOnly")
        and "persistentVolumeClaim" in volumes.get(mount.get("name"), {})
    ]


def pod_volumes(deployment) -> list[dict]:
    return dig(deployment, "spec", "template", "spec", "volumes", default=[]) or []


def under(path: str, directory: str) -> bool:
    return posixpath.commonpath(
        [posixpath.normpath(path), posixpath.normpath(directory)]
    ) == posixpath.normpath(directory)


def file_keys(table, prefix=""):
    """Every `*_file` key of a TOML document, with its dotted path."""
    if isinstance(table, dict):
        for key, value in table.items():
            path = f"{prefix}.{key}" if prefix else key
            if key.endswith("_file") and isinstance(value, str):
                yield path, value
            else:
                yield from file_keys(value, path)
    elif isinstance(table, list):
        for i, value in enumerate(table):
            yield from file_keys(value, f"{prefix}[{i}]")


def check_deployment(name, deployment, by_kind, p: Problems) -> str | None:
    """Returns the text of the cronbyte.toml the pod reads, if it could be found."""
    where = f"{name} (Deployment/{dig(deployment, 'metadata', 'name')})"
    spec = deployment.get("spec") or {}
    pod = dig(spec, "template", "spec", default={}) or {}
    pod_labels = dig(spec, "template", "metadata", "labels", default={}) or {}

    p.require(spec.get("replicas") == 1, where, "SQLite has one writer: replicas must be 1")
    p.require(
        dig(spec, "strategy", "type") == "Recreate",
        where,
        "strategy must be Recreate: two pods must never overlap on the history",
    )
    p.require(
        selects(dig(spec, "selector", "matchLabels"), pod_labels),
        where,
        "spec.selector.matchLabels does not match the pod template's labels",
    )
    grace = pod.get("terminationGracePeriodSeconds")
    p.require(
        isinstance(grace, int) and grace > 10,
        where,
        "terminationGracePeriodSeconds must exceed the 10 s cronbyte may take to exit",
    )
    p.require(
        dig(pod, "securityContext", "runAsNonRoot") is True,
        where,
        "pod securityContext.runAsNonRoot must be true",
    )
    p.require(
        dig(pod, "securityContext", "seccompProfile", "type") == "RuntimeDefault",
        where,
        "pod seccompProfile must be RuntimeDefault",
    )

    containers = pod.get("containers") or []
    if not p.require(len(containers) == 1, where, "expected exactly one container"):
        return None
    c = containers[0]
    cwhere = f"{where} container {c.get('name')!r}"
    sc = c.get("securityContext") or {}
    p.require(
        sc.get("readOnlyRootFilesystem") is True, cwhere, "readOnlyRootFilesystem must be true"
    )
    p.require(
        sc.get("allowPrivilegeEscalation") is False,
        cwhere,
        "allowPrivilegeEscalation must be false",
    )
    p.require(dig(sc, "capabilities", "drop") == ["ALL"], cwhere, "capabilities must drop ALL")
    for bound in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            p.require(
                dig(c, "resources", bound, resource) is not None,
                cwhere,
                f"resources.{bound}.{resource} is missing",
            )

    ports = c.get("ports") or []
    port_names = {pt.get("name"): pt.get("containerPort") for pt in ports}
    port_numbers = {pt.get("containerPort") for pt in ports}
    expected_paths = {
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
        "startupProbe": "/healthz",
    }
    for probe_name in ("livenessProbe", "readinessProbe"):
        p.require(probe_name in c, cwhere, f"{probe_name} is missing")
    for probe_name, path in expected_paths.items():
        probe = c.get(probe_name)
        if probe is None:
            continue
        get = probe.get("httpGet")
        if not p.require(get is not None, cwhere, f"{probe_name} must be an httpGet probe"):
            continue
        p.require(
            get.get("path") == path,
            cwhere,
            f"{probe_name} must ask {path}, not {get.get('path')!r}",
        )
        port = get.get("port")
        p.require(
            port in port_names or port in port_numbers,
            cwhere,
            f"{probe_name} uses port {port!r}, which the container does not declare",
        )

    files = mounted_files(deployment, c, by_kind, p, cwhere)

    # The config file the command line names must come from the ConfigMap.
    args = list(c.get("command") or []) + list(c.get("args") or [])
    config_path = "/etc/cronbyte/cronbyte.toml"
    if "--config" in args and args.index("--config") + 1 < len(args):
        config_path = args[args.index("--config") + 1]
    source = files.get(config_path)
    if not p.require(
        source is not None and source[0] == "ConfigMap",
        cwhere,
        f"--config {config_path} is not a file mounted from a ConfigMap",
    ):
        return None
    configmap = by_kind["ConfigMap"][source[1]]
    text = configmap["data"][source[2]]
    cfg_where = f"ConfigMap/{source[1]} key {source[2]}"
    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        p.add(cfg_where, f"not valid TOML: {e}")
        return None

    for key, path in file_keys(config):
        found = files.get(posixpath.normpath(path))
        p.require(
            found is not None and found[0] == "Secret",
            cfg_where,
            f"{key} = {path!r}, which no Secret volume of the pod provides",
        )
    store = dig(config, "store", "path")
    p.require(
        isinstance(store, str)
        and posixpath.isabs(store)
        and any(under(store, m) for m in persistent_mounts(deployment, c)),
        cfg_where,
        f"store.path {store!r} is not on the data volume (a read-only root would refuse it, and an emptyDir would lose it)",
    )
    listen = str(dig(config, "server", "listen", default="127.0.0.1:9464"))
    host, _, port = listen.rpartition(":")
    p.require(
        host not in ("127.0.0.1", "localhost", "[::1]"),
        cfg_where,
        f"server.listen {listen!r} is loopback: probes and Prometheus could not reach it",
    )
    p.require(
        port.isdigit() and int(port) in port_numbers,
        cfg_where,
        f"server.listen port {port!r} is not a declared containerPort",
    )
    return text


def check_service(name, service, deployments, p: Problems) -> None:
    where = f"{name} (Service/{dig(service, 'metadata', 'name')})"
    selector = dig(service, "spec", "selector")
    targets = [
        d
        for d in deployments
        if selects(selector, dig(d, "spec", "template", "metadata", "labels"))
    ]
    p.require(bool(targets), where, f"selector {selector} matches no Deployment's pods")
    for d in targets:
        ports = dig(d, "spec", "template", "spec", "containers", 0, "ports", default=[]) or []
        names = {pt.get("name") for pt in ports}
        numbers = {pt.get("containerPort") for pt in ports}
        for port in dig(service, "spec", "ports", default=[]) or []:
            target = port.get("targetPort", port.get("port"))
            p.require(
                target in names or target in numbers,
                where,
                f"port {port.get('name')!r} targets {target!r}, which the pod does not declare",
            )
    p.require(
        any(
            pt.get("name") == "http-metrics" and pt.get("port") == 9464
            for pt in dig(service, "spec", "ports", default=[]) or []
        ),
        where,
        "expected port 9464 named http-metrics",
    )


def check_servicemonitor(name, monitor, services, p: Problems) -> None:
    where = f"{name} (ServiceMonitor/{dig(monitor, 'metadata', 'name')})"
    selector = dig(monitor, "spec", "selector", "matchLabels")
    matched = [s for s in services if selects(selector, dig(s, "metadata", "labels"))]
    if not p.require(bool(matched), where, f"selector {selector} matches no Service's labels"):
        return
    endpoints = dig(monitor, "spec", "endpoints", default=[]) or []
    p.require(bool(endpoints), where, "has no endpoints")
    for i, endpoint in enumerate(endpoints):
        port = endpoint.get("port")
        for s in matched:
            names = {pt.get("name") for pt in dig(s, "spec", "ports", default=[]) or []}
            p.require(
                port in names,
                where,
                f"endpoints[{i}].port {port!r} is not a port name of Service {dig(s, 'metadata', 'name')!r}",
            )
        p.require(
            endpoint.get("path", "/metrics") == "/metrics",
            where,
            f"endpoints[{i}] must scrape /metrics",
        )


def check_secret(name, secret, p: Problems) -> None:
    # The repository only ever holds placeholders; a real value here is a leaked secret.
    where = f"{name} (Secret/{dig(secret, 'metadata', 'name')})"
    p.require(not secret.get("data"), where, "use stringData placeholders, not data")
    for key, value in (secret.get("stringData") or {}).items():
        p.require(
            "REPLACE" in str(value),
            where,
            f"{key} does not look like a placeholder (no REPLACE in it)",
        )


def write_config(config_text: str, out: Path) -> None:
    """The pod's cronbyte.toml with its secret files relocated under out/secrets/."""
    secrets = out / "secrets"
    secrets.mkdir(parents=True, exist_ok=True)
    for _, path in file_keys(tomllib.loads(config_text)):
        if path.startswith(SECRETS_DIR):
            (secrets / path[len(SECRETS_DIR) :]).write_text("placeholder-for-check\n")
    (out / "cronbyte.toml").write_text(config_text.replace(SECRETS_DIR, f"{secrets}/"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", nargs="?", default=str(Path(__file__).resolve().parent))
    parser.add_argument("--config-out", type=Path)
    args = parser.parse_args()

    p = Problems()
    directory = Path(args.directory)
    _, resources = load(directory, p)

    by_kind: dict[str, dict[str, dict]] = {}
    for name, obj in resources:
        check_common(name, obj, p)
        if isinstance(obj, dict):
            kind = obj.get("kind")
            obj_name = dig(obj, "metadata", "name")
            if obj_name in by_kind.setdefault(kind, {}):
                p.add(name, f"two {kind} objects are named {obj_name!r}")
            by_kind[kind][obj_name] = obj
    for kind in KNOWN_KINDS:
        p.require(kind in by_kind, str(directory), f"no {kind} in the manifests")

    deployments = list(by_kind.get("Deployment", {}).values())
    services = list(by_kind.get("Service", {}).values())
    config_text = None
    for name, obj in resources:
        if not isinstance(obj, dict):
            continue
        kind = obj.get("kind")
        if kind == "Deployment":
            config_text = check_deployment(name, obj, by_kind, p) or config_text
        elif kind == "Service":
            check_service(name, obj, deployments, p)
        elif kind == "ServiceMonitor":
            check_servicemonitor(name, obj, services, p)
        elif kind == "Secret":
            check_secret(name, obj, p)

    if p.lines:
        for line in p.lines:
            print(f"FAIL {line}")
        print(f"{len(p.lines)} problem(s) in {directory}")
        return 1
    if args.config_out is not None and config_text is not None:
        write_config(config_text, args.config_out)
    print(f"{directory}: {len(resources)} object(s) consistent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
