#!/usr/bin/env python3
"""Checks of rendered charts, for `charts/test`.

Reads what the apiserver answered to a server-side dry run of a chart's render (a JSON
`List`, as `kubectl apply --dry-run=server -o json` prints it) and checks what a user would
notice: the hardened security context, that the agent's RBAC and its local policy flags
agree, that every path a flag names is mounted, that the hub keeps one replica on its
volume. Standard library only.

    checks.py CASE FILE [--namespace NS] [--restricted NS,NS]
    checks.py flags FILE CONTAINER HELP_FILE   # every flag the chart passes exists
"""

import json
import re
import sys

failures = []
count = 0


def check(ok, message):
    global count
    count += 1
    if not ok:
        failures.append(message)


def load(path):
    with open(path) as f:
        doc = json.load(f)
    return doc["items"] if doc.get("kind") == "List" else [doc]


def of_kind(objects, kind):
    return [o for o in objects if o["kind"] == kind]


def one(objects, kind, name=None):
    found = [o for o in of_kind(objects, kind) if name is None or o["metadata"]["name"] == name]
    if len(found) != 1:
        failures.append(f"expected one {kind}{' ' + name if name else ''}, found {len(found)}")
        return {"metadata": {"name": name or "?"}, "spec": {}, "rules": [], "data": {}}
    return found[0]


def flags(args):
    """`--name=value` / `--name value` / `--switch` → {name: [values]}."""
    out = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--"):
            if "=" in arg:
                name, value = arg[2:].split("=", 1)
            elif i + 1 < len(args) and not args[i + 1].startswith("--"):
                name, value = arg[2:], args[i + 1]
                i += 1
            else:
                name, value = arg[2:], None
            out.setdefault(name, []).append(value)
        i += 1
    return out


def pod_spec(deployment):
    return deployment["spec"]["template"]["spec"]


def container(deployment, name, init=False):
    key = "initContainers" if init else "containers"
    found = [c for c in pod_spec(deployment).get(key, []) if c["name"] == name]
    if len(found) != 1:
        failures.append(f"Deployment {deployment['metadata']['name']}: no {key[:-1]} {name}")
        return {"args": [], "env": [], "volumeMounts": [], "securityContext": {}}
    return found[0]


def hardened(deployment):
    """The hardened security context, on the pod and on every container."""
    name = deployment["metadata"]["name"]
    pod = pod_spec(deployment)
    psc = pod.get("securityContext", {})
    for c in pod.get("initContainers", []) + pod["containers"]:
        sc = c.get("securityContext", {})
        where = f"Deployment {name} container {c['name']}"
        merged = {**psc, **sc}
        check(merged.get("runAsNonRoot") is True, f"{where}: runAsNonRoot is not true")
        check(merged.get("runAsUser") == 65532, f"{where}: runAsUser is not 65532")
        check(
            merged.get("seccompProfile", {}).get("type") == "RuntimeDefault",
            f"{where}: seccompProfile is not RuntimeDefault",
        )
        check(sc.get("readOnlyRootFilesystem") is True, f"{where}: root filesystem is writable")
        check(
            sc.get("allowPrivilegeEscalation") is False,
            f"{where}: allowPrivilegeEscalation is not false",
        )
        check(sc.get("privileged") is not True, f"{where}: privileged")
        check(
            sc.get("capabilities", {}).get("drop") == ["ALL"],
            f"{where}: capabilities do not drop ALL",
        )
        check(not sc.get("capabilities", {}).get("add"), f"{where}: adds capabilities")
        check(c.get("resources", {}).get("requests"), f"{where}: no resource requests")
        check(
            c.get("resources", {}).get("limits", {}).get("memory"),
            f"{where}: no memory limit",
        )
    for v in pod.get("volumes", []):
        check("hostPath" not in v, f"Deployment {name}: hostPath volume {v['name']}")
    check(not pod.get("hostNetwork"), f"Deployment {name}: hostNetwork")
    # Service links would put FLOTILLA_*_PORT variables where the binaries read settings.
    check(pod.get("enableServiceLinks") is False, f"Deployment {name}: enableServiceLinks is not false")


def mounted(deployment, c, path):
    """The volume mounted at the directory that holds `path`, or None."""
    best = None
    for m in c.get("volumeMounts", []):
        mount = m["mountPath"].rstrip("/") + "/"
        if (path + "/").startswith(mount) and (best is None or len(mount) > len(best[0])):
            best = (mount, m)
    if best is None:
        return None, None
    volumes = {v["name"]: v for v in pod_spec(deployment).get("volumes", [])}
    return volumes.get(best[1]["name"]), path[len(best[0]) :]


def configmap_file(objects, deployment, c, path, what):
    """`path` is a key of a ConfigMap the chart renders, mounted where `path` says."""
    volume, rest = mounted(deployment, c, path)
    check(volume is not None and "configMap" in volume, f"{what} {path} is not on a ConfigMap volume")
    if volume and "configMap" in volume:
        cm = one(objects, "ConfigMap", volume["configMap"]["name"])
        check(rest in cm.get("data", {}), f"{what} {path}: ConfigMap has no key {rest}")
        return cm.get("data", {}).get(rest, "")
    return ""


def env(c, name):
    found = [e for e in c.get("env", []) if e["name"] == name]
    return found[0] if found else None


def secret_ref(objects, c, name, secret=None, key=None, rendered=True):
    e = env(c, name)
    check(e is not None, f"env {name} is missing")
    if not e:
        return
    ref = e.get("valueFrom", {}).get("secretKeyRef")
    check(ref is not None and "value" not in e, f"env {name} is not from a Secret")
    if not ref:
        return
    if secret:
        check(ref["name"] == secret, f"env {name} names Secret {ref['name']}, not {secret}")
    if key:
        check(ref["key"] == key, f"env {name} names key {ref['key']}, not {key}")
    if rendered:
        s = one(objects, "Secret", ref["name"])
        check(ref["key"] in s.get("data", {}), f"Secret {ref['name']} has no key {ref['key']}")


def probe(c, kind, path, port):
    p = c.get(kind, {}).get("httpGet", {})
    check(p.get("path") == path and p.get("port") == port, f"{kind} is not {path} on {port}: {p}")


# The agent.

DISCOVERY_VERBS = {"get", "list", "watch"}


def rules_allow_writes(rules):
    return [r for r in rules if set(r.get("verbs", [])) - DISCOVERY_VERBS]


def agent_common(objects, namespace):
    d = one(objects, "Deployment")
    hardened(d)
    c = container(d, "agent")
    f = flags(c.get("args", []))
    check(c.get("args", [None])[0] == "run", f"agent args do not start with run: {c.get('args')}")
    name = d["metadata"]["name"]
    for flag in ["hub", "hub-ca", "cluster", "namespace", "agent-name", "identity-secret",
                 "cache-dir", "listen", "lease-name", "holder"]:
        check(len(f.get(flag, [])) == 1, f"agent: --{flag} given {len(f.get(flag, []))} times")
    check(f.get("namespace") == [namespace], f"agent --namespace is not {namespace}: {f.get('namespace')}")
    check(f.get("listen") == ["0.0.0.0:8080"], "agent does not listen on 0.0.0.0:8080")
    check(f.get("cache-dir") == ["/var/cache/flotilla"], "agent cache is not /var/cache/flotilla")

    # --agent-name is exactly the name of the ServiceAccount and cluster RBAC it must protect.
    agent_name = (f.get("agent-name") or ["?"])[0]
    sa = pod_spec(d).get("serviceAccountName")
    check(sa == agent_name, f"ServiceAccount {sa} is not --agent-name {agent_name}")
    one(objects, "ServiceAccount", agent_name)
    one(objects, "ClusterRole", agent_name)
    crb = one(objects, "ClusterRoleBinding", agent_name)
    check(crb.get("roleRef", {}).get("name") == agent_name, "ClusterRoleBinding binds another role")
    check(
        {"kind": "ServiceAccount", "name": agent_name, "namespace": namespace} in crb.get("subjects", []),
        "ClusterRoleBinding does not bind the agent's ServiceAccount",
    )

    # The holder is the pod's name, from the downward API.
    check(f.get("holder") == ["$(POD_NAME)"], f"--holder is not $(POD_NAME): {f.get('holder')}")
    pod_name = env(c, "POD_NAME") or {}
    check(
        pod_name.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name",
        "POD_NAME is not the pod's name",
    )

    # The files the flags name are mounted, from the ConfigMap.
    ca = configmap_file(objects, d, c, (f.get("hub-ca") or ["?"])[0], "--hub-ca")
    check("BEGIN CERTIFICATE" in ca, "--hub-ca holds no certificate")
    keys = f.get("trust-key", [])
    check(len(keys) >= 1, "no --trust-key")
    for k in keys:
        check("BEGIN PUBLIC KEY" in configmap_file(objects, d, c, k, "--trust-key"),
              f"--trust-key {k} holds no public key")
    cache, _ = mounted(d, c, "/var/cache/flotilla")
    check(cache is not None, "nothing is mounted at /var/cache/flotilla")

    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    check(ports.get("metrics") == 8080, f"no container port metrics 8080: {ports}")
    probe(c, "livenessProbe", "/healthz", "metrics")
    probe(c, "readinessProbe", "/readyz", "metrics")

    # The agent's own state, always.
    state = [r for r in of_kind(objects, "Role") if r["metadata"]["namespace"] == namespace]
    check(len(state) == 1, f"expected one Role in {namespace}, found {len(state)}")
    granted = {(g, res) for r in state for rule in r.get("rules", []) for g in rule["apiGroups"]
               for res in rule["resources"] if "*" in rule["verbs"]}
    for need in [("", "secrets"), ("", "configmaps"), ("coordination.k8s.io", "leases")]:
        check(need in granted, f"the state Role does not grant {need}")
    bound = [b for b in of_kind(objects, "RoleBinding") if b["metadata"]["namespace"] == namespace]
    state_name = state[0]["metadata"]["name"] if state else None
    check(len(bound) == 1 and bound[0]["roleRef"]["name"] == state_name, "the state Role is not bound")
    return d, c, f, agent_name


def bootstrap(objects, f, secret, rendered):
    check(f.get("bootstrap-secret") == [secret], f"--bootstrap-secret is not {secret}: {f.get('bootstrap-secret')}")
    secrets = [s["metadata"]["name"] for s in of_kind(objects, "Secret")]
    if rendered:
        s = one(objects, "Secret", secret)
        check("token" in s.get("data", {}), f"Secret {secret} has no key token")
    else:
        check(secret not in secrets, f"Secret {secret} is rendered though it exists already")


def agent_default(objects, namespace, restricted):
    d, c, f, name = agent_common(objects, namespace)
    bootstrap(objects, f, f"{name}-bootstrap", rendered=True)
    rules = one(objects, "ClusterRole", name).get("rules", [])
    check(
        any(r.get("apiGroups") == ["*"] and r.get("resources") == ["*"] and r.get("verbs") == ["*"]
            for r in rules),
        "the unrestricted ClusterRole does not grant everything",
    )
    check(any(r.get("nonResourceURLs") for r in rules), "the ClusterRole grants no nonResourceURLs")
    check("allow-namespace" not in f and "allow-kind" not in f, "unrestricted agent has a local policy")
    check(len(of_kind(objects, "Role")) == 1, "unrestricted agent has more Roles than its state's")
    check(pod_spec(d).get("automountServiceAccountToken") is not False, "the agent has no token")
    check(d["spec"]["replicas"] == 1, "default replicas is not 1")
    cache, _ = mounted(d, c, "/var/cache/flotilla")
    check(cache is not None and "emptyDir" in cache, "the default cache is not an emptyDir")
    for kind in ["NetworkPolicy", "Service", "PersistentVolumeClaim"]:
        check(not of_kind(objects, kind), f"a default install renders a {kind}")


def kind_flag(group, kind):
    return kind if group == "" else f"{group}/{kind}"


def agent_restricted(objects, namespace, restricted):
    d, c, f, name = agent_common(objects, namespace)
    bootstrap(objects, f, "agent-bootstrap", rendered=False)
    cluster_rules = one(objects, "ClusterRole", name).get("rules", [])
    check(not rules_allow_writes(cluster_rules), f"the restricted ClusterRole grants writes: {cluster_rules}")
    check(not any("*" in r.get("resources", []) for r in cluster_rules), "the restricted ClusterRole names *")
    check(any("/api" in r.get("nonResourceURLs", []) for r in cluster_rules), "no discovery for /api")

    # RBAC and local policy agree: the namespaces with a Role are the --allow-namespace list,
    # and each Role grants exactly the --allow-kind kinds' resources.
    work = [r for r in of_kind(objects, "Role") if r["metadata"]["namespace"] != namespace]
    check(sorted(r["metadata"]["namespace"] for r in work) == sorted(restricted),
          f"Roles are in {[r['metadata']['namespace'] for r in work]}, not {restricted}")
    check(sorted(f.get("allow-namespace", [])) == sorted(restricted),
          f"--allow-namespace {f.get('allow-namespace')} is not {restricted}")
    expected_kinds = {("", "ConfigMap", "configmaps"), ("apps", "Deployment", "deployments")}
    check(sorted(f.get("allow-kind", [])) == sorted(kind_flag(g, k) for g, k, _ in expected_kinds),
          f"--allow-kind is {f.get('allow-kind')}")
    for r in work:
        granted = {(g, res) for rule in r["rules"] for g in rule["apiGroups"] for res in rule["resources"]}
        check(granted == {(g, res) for g, _, res in expected_kinds},
              f"Role in {r['metadata']['namespace']} grants {sorted(granted)}")
    for ns in restricted:
        bindings = [b for b in of_kind(objects, "RoleBinding") if b["metadata"]["namespace"] == ns]
        check(len(bindings) == 1 and {"kind": "ServiceAccount", "name": name, "namespace": namespace}
              in bindings[0].get("subjects", []), f"no RoleBinding for the agent in {ns}")

    check(d["spec"]["replicas"] == 2, "replicas is not 2")
    cache, _ = mounted(d, c, "/var/cache/flotilla")
    pvc = one(objects, "PersistentVolumeClaim")
    check(cache is not None and cache.get("persistentVolumeClaim", {}).get("claimName") == pvc["metadata"]["name"],
          "the cache is not the PVC")
    np = one(objects, "NetworkPolicy")
    spec = np.get("spec", {})
    check(sorted(spec.get("policyTypes", [])) == ["Egress", "Ingress"], "NetworkPolicy does not limit both ways")
    cidrs = {p["ipBlock"]["cidr"] for e in spec.get("egress", []) for p in e.get("to", []) if "ipBlock" in p}
    check(cidrs == {"203.0.113.10/32", "10.0.0.0/24"}, f"egress goes to {cidrs}")
    check(any(p.get("port") == 53 for e in spec.get("egress", []) for p in e.get("ports", [])), "no DNS egress")
    check(all(e.get("to") or all(p.get("port") == 53 for p in e.get("ports", [])) for e in spec.get("egress", [])),
          "an egress rule allows every destination on a port other than DNS")
    svc = one(objects, "Service")
    check([p.get("targetPort") for p in svc.get("spec", {}).get("ports", [])] == ["metrics"],
          "the metrics Service does not target the metrics port")


def agent_kinds(objects, namespace, restricted):
    d, c, f, name = agent_common(objects, namespace)
    rules = one(objects, "ClusterRole", name).get("rules", [])
    granted = {(g, res) for r in rules_allow_writes(rules) for g in r["apiGroups"] for res in r["resources"]}
    check(granted == {("", "configmaps"), ("apps", "deployments")},
          f"the kinds-only ClusterRole grants writes on {sorted(granted)}")
    check("allow-namespace" not in f, "kinds-only agent has --allow-namespace")
    check(sorted(f.get("allow-kind", [])) == ["ConfigMap", "apps/Deployment"], f"--allow-kind is {f.get('allow-kind')}")
    check(len(of_kind(objects, "Role")) == 1, "kinds-only agent has Roles besides its state's")


# The hub.

DATA = "/var/lib/flotilla"


def hub_common(objects, namespace):
    d = one(objects, "Deployment")
    hardened(d)
    spec = d.get("spec", {})
    check(spec.get("replicas") == 1, "the hub does not run exactly one replica")
    check(spec.get("strategy", {}).get("type") == "Recreate", "the hub's strategy is not Recreate")
    pod = pod_spec(d)
    check(pod.get("securityContext", {}).get("fsGroup") == 65532, "no fsGroup 65532 for the data volume")
    check(pod.get("automountServiceAccountToken") is False, "the hub gets a ServiceAccount token it never needs")

    init = container(d, "init", init=True)
    fi = flags(init.get("args", []))
    check(init.get("args", [None])[0] == "init", f"init container does not run init: {init.get('args')}")
    check("if-missing" in fi, "init runs without --if-missing")
    hub = container(d, "hub")
    f = flags(hub.get("args", []))
    check(hub.get("args", [None])[0] == "serve", f"hub container does not run serve: {hub.get('args')}")
    data_dir = (f.get("data-dir") or ["?"])[0]
    check(fi.get("data-dir") == [data_dir], "init and serve use different data directories")
    check(data_dir.startswith(DATA + "/"), f"data dir {data_dir} is not inside the volume at {DATA}")
    for c in (init, hub):
        volume, _ = mounted(d, c, data_dir)
        check(volume is not None and volume.get("name") == "data", f"{c['name']}: the data volume is not mounted")
        tmp, _ = mounted(d, c, "/tmp/x")
        check(tmp is not None and "emptyDir" in tmp, f"{c['name']}: /tmp is not writable")
    check(f.get("listen") == ["0.0.0.0:8080"], f"--listen is {f.get('listen')}")
    check(f.get("agent-listen") == ["0.0.0.0:8443"], f"--agent-listen is {f.get('agent-listen')}")
    check(f.get("agent-url") == ["https://flotilla-agents.example.com:8443"], f"--agent-url is {f.get('agent-url')}")
    ports = {p["name"]: p["containerPort"] for p in hub.get("ports", [])}
    check(ports == {"http": 8080, "agent-api": 8443}, f"hub ports are {ports}")
    for kind in ["startupProbe", "livenessProbe", "readinessProbe"]:
        probe(hub, kind, "/healthz", "http")

    services = {s["metadata"]["name"]: s for s in of_kind(objects, "Service")}
    targets = {s_name: [p["targetPort"] for p in s["spec"]["ports"]] for s_name, s in services.items()}
    check(sorted(targets.values()) == [["agent-api"], ["http"]], f"Services target {targets}")
    agent_svc = [s for s in services.values() if s["spec"]["ports"][0]["targetPort"] == "agent-api"]
    if agent_svc:
        svc_name = agent_svc[0]["metadata"]["name"]
        names = f.get("agent-hostname", [])
        check(f"{svc_name}.{namespace}.svc" in names, f"the agent API certificate lacks {svc_name}.{namespace}.svc")
    for ing in of_kind(objects, "Ingress"):
        for rule in ing["spec"].get("rules", []):
            for p in rule["http"]["paths"]:
                port = p["backend"]["service"]["port"]
                check(port.get("name") == "http", f"the Ingress routes to {port}, not the human API")
    return d, hub, f


def hub_default(objects, namespace, restricted):
    d, hub, f = hub_common(objects, namespace)
    pvc = one(objects, "PersistentVolumeClaim")
    volume, _ = mounted(d, hub, DATA + "/data")
    check(volume and volume.get("persistentVolumeClaim", {}).get("claimName") == pvc["metadata"]["name"],
          "the data volume is not the chart's PVC")
    check(pvc["metadata"].get("annotations", {}).get("helm.sh/resource-policy") == "keep",
          "the data PVC is not kept on uninstall")
    secret_ref(objects, hub, "FLOTILLA_HUB_WEBHOOK_SECRET")
    check(env(hub, "FLOTILLA_HUB_DATABASE_URL") is None, "a database URL without externalDatabase")
    ca = configmap_file(objects, d, hub, (f.get("git-ca-file") or ["?"])[0], "--git-ca-file")
    check("BEGIN CERTIFICATE" in ca, "--git-ca-file holds no certificate")
    check(f.get("config-repo") == ["https://git.example.com/platform/fleet-config.git"], "no --config-repo")
    check(len(f.get("rewrite", [])) == 1, "no --rewrite")
    lb = [s for s in of_kind(objects, "Service") if s["spec"]["type"] == "LoadBalancer"]
    check(len(lb) == 1 and lb[0]["spec"]["ports"][0]["targetPort"] == "agent-api",
          "the agent API is not the LoadBalancer Service")
    check(len(of_kind(objects, "Ingress")) == 1, "no Ingress")


def hub_external(objects, namespace, restricted):
    d, hub, f = hub_common(objects, namespace)
    check(not of_kind(objects, "PersistentVolumeClaim"), "a PVC besides the existing claim")
    volume, _ = mounted(d, hub, DATA + "/data")
    check(volume and volume.get("persistentVolumeClaim", {}).get("claimName") == "hub-data",
          "the data volume is not the existing claim")
    secret_ref(objects, hub, "FLOTILLA_HUB_WEBHOOK_SECRET", secret="hub-webhook", key="token", rendered=False)
    secret_ref(objects, hub, "FLOTILLA_HUB_DATABASE_URL", key="url")
    check(not any("postgres://" in json.dumps(c) for c in pod_spec(d)["containers"]),
          "the database URL is in the pod spec")
    check("git-ca-file" not in f, "--git-ca-file without a CA bundle")
    np = [s for s in of_kind(objects, "Service") if s["spec"]["type"] == "NodePort"]
    check(len(np) == 1 and np[0]["spec"]["ports"][0].get("nodePort") == 30443, "the agent API is not NodePort 30443")
    check(not of_kind(objects, "Ingress"), "an Ingress though disabled")


# Flags against the binary.

def known_flags(help_text):
    return set(re.findall(r"^\s*(?:-\w, )?--([a-z0-9][a-z0-9-]*)", help_text, re.M))


def flag_check(path, container_name, help_path):
    objects = load(path)
    with open(help_path) as f:
        known = known_flags(f.read())
    check("help" in known, f"{help_path}: no flags found in the help text")
    d = one(objects, "Deployment")
    pod = pod_spec(d)
    for c in pod.get("initContainers", []) + pod["containers"]:
        if c["name"] != container_name:
            continue
        for name in flags(c.get("args", [])):
            check(name in known, f"container {c['name']} passes --{name}, which the binary does not know")


CASES = {
    "agent-default": agent_default,
    "agent-restricted": agent_restricted,
    "agent-kinds": agent_kinds,
    "hub-default": hub_default,
    "hub-external": hub_external,
}


def main(argv):
    if len(argv) >= 5 and argv[1] == "flags":
        flag_check(argv[2], argv[3], argv[4])
        case = f"flags of {argv[3]}"
    elif len(argv) >= 3 and argv[1] in CASES:
        opts = dict(zip(argv[3::2], argv[4::2]))
        namespace = opts.get("--namespace", "default")
        restricted = [n for n in opts.get("--restricted", "").split(",") if n]
        CASES[argv[1]](load(argv[2]), namespace, restricted)
        case = argv[1]
    else:
        print(__doc__, file=sys.stderr)
        return 2
    for message in failures:
        print(f"    FAIL {case}: {message}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
