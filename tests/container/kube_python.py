"""deploy/kubernetes/, checked without a cluster (none runs here):

1. `kubectl kustomize` builds it (with secrets made by deploy/new-secrets.sh and the test's
   image set in an overlay, as a user sets theirs); every resource validates against the
   Kubernetes 1.37 schemas with `kubernetes-validate --strict` (unknown fields refused — a
   misspelt field is the control that shows the check refuses); what kustomize made holds
   what the README promises (probes on /health, downward-API settings, non-root, no privilege
   escalation, read-only root, every capability dropped, the generated ConfigMap and Secret
   referenced by their hashed names).
2. The built Deployments run with `podman kube play`: Redis, and the gateway's pod from the
   same manifest. What podman 4.3 lacks is filled in and said: configMap and secret volumes
   become hostPath volumes holding the same files, one replica, the Service name `redis` is a
   network alias, and `status.podIP` (which podman does not fill in) is the static address the
   pod is given, and `$(NAME)` references are expanded as the kubelet expands them. Podman runs the liveness probe as a command in the container (with curl,
   which the image does not have), so the probes are made as the kubelet makes them: HTTP GETs
   from outside to the pod's port. The pod runs as the manifest says (user, read-only root, no
   capabilities, no new privileges), the downward API filled in its address and name, it joined
   Redis, and the SDK battery passes through its port over both transports with the API key.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import yaml

from battery import every_transport
from common import check, summary

IMAGE, REDIS_IMAGE, BASE_IMAGE, FAKE, ROOT, VALIDATE = sys.argv[1:7]
PODMAN = ["podman", "--runtime", "runc"]
NETWORK = "aam-kube"
SUBNET, POD_IP = "10.89.77.0/24", "10.89.77.10"
POD_NAME = "aareguru-mcp-pod-0"  # what podman names a Deployment's pod


def run(*args: str, timeout: float = 300, input: str | None = None, ok: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, input=input)
    if ok and r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def podman(*args: str, **kw) -> str:
    return run(*PODMAN, *args, **kw).stdout.strip()


def build(work: str) -> list[dict]:
    base = os.path.join(work, "base")
    shutil.copytree(f"{ROOT}/deploy/kubernetes", base)
    out = run(f"{ROOT}/deploy/new-secrets.sh", os.path.join(base, "secrets"), "tester").stdout
    overlay = os.path.join(work, "overlay")
    os.makedirs(overlay)
    name, tag = IMAGE.rsplit(":", 1)
    with open(os.path.join(overlay, "kustomization.yaml"), "w") as f:
        # The base names registry.example.com/aareguru-mcp; an overlay renames that, as a user's would.
        yaml.safe_dump({"resources": ["../base"], "images": [
            {"name": "registry.example.com/aareguru-mcp", "newName": name, "newTag": tag}]}, f)
    built = run("kubectl", "kustomize", overlay).stdout
    with open(os.path.join(work, "built.yaml"), "w") as f:
        f.write(built)
    docs = [d for d in yaml.safe_load_all(built) if d]
    return docs, out.splitlines()[-1].strip()


def validate(work: str, docs: list[dict]) -> None:
    path = os.path.join(work, "built.yaml")
    r = run(VALIDATE, "--strict", path, ok=False)
    passed = r.stdout.count(" passed for resource ")
    check(r.returncode == 0 and passed == len(docs),
          f"kubernetes-validate --strict: {passed} of {len(docs)} resources pass\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
    bad = copy.deepcopy(docs)
    dep = next(d for d in bad if d["kind"] == "Deployment" and d["metadata"]["name"] == "aareguru-mcp")
    c = dep["spec"]["template"]["spec"]["containers"][0]
    c["readinessProbes"] = c.pop("readinessProbe")
    bad_path = os.path.join(work, "misspelt.yaml")
    with open(bad_path, "w") as f:
        yaml.safe_dump_all(bad, f)
    r = run(VALIDATE, "--strict", bad_path, ok=False)
    check(r.returncode != 0 and "readinessProbes" in r.stdout + r.stderr,
          "the control: a misspelt field fails kubernetes-validate --strict")


def kinds(docs: list[dict]) -> dict:
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}


def promised(docs: list[dict]) -> None:
    by = kinds(docs)
    names = sorted(by)
    for want in ["Namespace/aareguru-mcp", "Deployment/aareguru-mcp", "Service/aareguru-mcp",
                 "PodDisruptionBudget/aareguru-mcp", "NetworkPolicy/aareguru-mcp", "NetworkPolicy/redis",
                 "Deployment/redis", "Service/redis"]:
        check(want in by, f"kustomize made {want}")
    cm = next(n for n in names if n.startswith("ConfigMap/aareguru-mcp-servers-"))
    secret = next(n for n in names if n.startswith("Secret/aareguru-mcp-"))
    pod = by["Deployment/aareguru-mcp"]["spec"]["template"]["spec"]
    c = pod["containers"][0]
    check(c["image"] == IMAGE, f"the overlay's image is used ({c['image']})")
    vols = {v["name"]: v for v in pod["volumes"]}
    check(vols["config"]["configMap"]["name"] == cm.split("/", 1)[1], "the Deployment mounts the generated ConfigMap")
    check(vols["secrets"]["secret"]["secretName"] == secret.split("/", 1)[1], "the Deployment mounts the generated Secret")
    check(c["readinessProbe"]["httpGet"]["path"] == "/health" and c["livenessProbe"]["httpGet"]["path"] == "/health",
          "readiness and liveness probes on /health")
    env = {e["name"]: e for e in c["env"]}
    check(env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
          and env["AAREGURU_MCP_ADVERTISE_URL"]["value"] == "http://$(POD_IP):8000"
          and env["AAREGURU_MCP_REPLICA_ID"]["value"] == "$(POD_NAME)", "the downward-API settings")
    sc, psc = c["securityContext"], pod["securityContext"]
    check(psc["runAsNonRoot"] and psc["runAsUser"] == 10001 and sc["allowPrivilegeEscalation"] is False
          and sc["readOnlyRootFilesystem"] and sc["capabilities"]["drop"] == ["ALL"]
          and psc["seccompProfile"]["type"] == "RuntimeDefault",
          "non-root, no privilege escalation, read-only root, capabilities dropped, RuntimeDefault seccomp")
    check(pod["terminationGracePeriodSeconds"] >= 25, "the stop grace covers the drain")
    data = by[secret]["data"]
    keys = json.loads(base64.b64decode(data["api-keys.json"]))
    check([k["name"] for k in keys["apiKeys"]] == ["tester"], "the Secret holds the key file (hash only)")


def for_podman(docs: list[dict], work: str) -> tuple[dict, dict]:
    """The two Deployments as podman 4.3 can play them (see the module's docstring)."""
    by = kinds(docs)
    files = {}
    for d in docs:
        if d["kind"] == "ConfigMap":
            files[d["metadata"]["name"]] = {k: v.encode() for k, v in d["data"].items()}
        elif d["kind"] == "Secret":
            files[d["metadata"]["name"]] = {k: base64.b64decode(v) for k, v in d["data"].items()}
    gateway = copy.deepcopy(by["Deployment/aareguru-mcp"])
    gateway["spec"]["replicas"] = 1
    spec = gateway["spec"]["template"]["spec"]
    for v in spec["volumes"]:
        source = (v.get("configMap") or {}).get("name") or (v.get("secret") or {}).get("secretName")
        if not source:
            continue
        folder = os.path.join(work, "volumes", v["name"])
        os.makedirs(folder)
        for name, content in files[source].items():
            with open(os.path.join(folder, name), "wb") as f:
                f.write(content)
            os.chmod(os.path.join(folder, name), 0o444)
        os.chmod(folder, 0o755)
        v.pop("configMap", None)
        v.pop("secret", None)
        v["hostPath"] = {"path": folder, "type": "Directory"}
    env = spec["containers"][0]["env"]
    known = {}
    for e in env:
        field = e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        if field == "status.podIP":
            # Podman does not fill status.podIP in: the pod gets this address (--ip).
            del e["valueFrom"]
            e["value"] = POD_IP
        elif field == "metadata.name":
            known[e["name"]] = POD_NAME  # podman fills it in; its value, to expand it below
        if "value" in e:
            # Podman does not expand $(NAME) as the kubelet does: expanded here, the same way.
            e["value"] = re.sub(r"\$\((\w+)\)", lambda m: known.get(m[1], m[0]), e["value"])
            known[e["name"]] = e["value"]
    # The Aareguru API is the fake one, on this network.
    env.append({"name": "AAREGURU_BASE_URL", "value": "http://fake-upstream:9100"})
    redis = copy.deepcopy(by["Deployment/redis"])
    redis["spec"]["template"]["spec"]["containers"][0]["image"] = REDIS_IMAGE
    return gateway, redis


def play(doc: dict, work: str, name: str, *options: str) -> None:
    path = os.path.join(work, f"{name}.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(doc, f)
    podman("kube", "play", *options, path, timeout=180)


def pod_of(app: str) -> str:
    return podman("ps", "--filter", f"label=app.kubernetes.io/name={app}", "--format", "{{.Names}}").split()[0]


def health(ip: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://{ip}:8000/health", timeout=3) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, {}


async def main() -> None:
    work = tempfile.mkdtemp(prefix="aam-kube-")
    docs, key = build(work)
    validate(work, docs)
    promised(docs)

    gateway, redis = for_podman(docs, work)
    cleanup = lambda: [
        run(*PODMAN, "kube", "down", os.path.join(work, f"{n}.yaml"), ok=False) for n in ["gateway", "redis"]
    ] + [run(*PODMAN, "rm", "-f", "-t", "0", "aam-kube-fake", ok=False),
         run(*PODMAN, "network", "rm", "-f", NETWORK, ok=False)]
    run(*PODMAN, "rm", "-f", "-t", "0", "aam-kube-fake", ok=False)
    run(*PODMAN, "network", "rm", "-f", NETWORK, ok=False)
    podman("network", "create", "--subnet", SUBNET, NETWORK)
    try:
        podman("run", "-d", "--name", "aam-kube-fake", "--network", f"{NETWORK}:alias=fake-upstream",
               "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096", "--read-only",
               "-v", f"{FAKE}:/usr/local/bin/fake_upstream:ro", BASE_IMAGE, "/usr/local/bin/fake_upstream", "0.0.0.0:9100")
        play(redis, work, "redis", "--network", f"{NETWORK}:alias=redis")
        play(gateway, work, "gateway", "--network", NETWORK, "--ip", POD_IP)
        container = pod_of("aareguru-mcp")
        ip = podman("inspect", "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", container)
        deadline = time.monotonic() + 60
        status, h = 0, {}
        while time.monotonic() < deadline:
            try:
                status, h = health(ip)
                if status == 200 and h.get("cluster"):
                    break
            except OSError:
                pass
            time.sleep(0.5)
        check(status == 200, f"the readiness probe's GET /health answers 200 ({status} {h})")
        check(h.get("status") == "ok", f"and says ok, Redis joined ({h.get('status')}: {h.get('reason')})")
        cluster = h.get("cluster", {})
        check(cluster.get("advertise_url") == f"http://{ip}:8000",
              f"the downward API's address is the advertised one: {json.dumps(cluster)[:300]}")
        named = podman("exec", container, "sh", "-c", "echo $POD_NAME")
        replica = [p["replica"] for p in cluster.get("peers", [])]
        check(named == POD_NAME and replica == [POD_NAME], f"the pod's name is its replica id ({named}, {replica})")
        user = podman("exec", container, "id", "-u")
        check(user == "10001", f"runs as user 10001 ({user})")
        inspect = json.loads(podman("inspect", container))[0]
        hc = inspect["HostConfig"]
        check(hc.get("ReadonlyRootfs") is True, "read-only root filesystem")
        caps = podman("exec", container, "sh", "-c", "grep -h '^Cap\\(Eff\\|Bnd\\)' /proc/[0-9]*/status | sort -u")
        check(caps.split() == ["CapBnd:", "0000000000000000", "CapEff:", "0000000000000000"],
              f"no capability in any of its processes, none to gain ({caps!r})")
        check("no-new-privileges" in json.dumps(hc.get("SecurityOpt")), f"no new privileges ({hc.get('SecurityOpt')})")
        r = run(*PODMAN, "exec", container, "sh", "-c", "touch /etc/x", ok=False)
        check(r.returncode != 0, "the root filesystem refuses a write")

        headers = {"X-API-Key": key, "Host": "mcp.example.com"}
        await every_transport(f"http://{ip}:8000", "kube play", headers=headers)
        status, _ = health(ip)
        check(status == 200, f"the liveness probe's GET /health still answers 200 ({status})")
    finally:
        if os.environ.get("KEEP_KUBE"):
            print(f"kept: {work}")
        else:
            cleanup()
    print(f"kubernetes: {summary()}")


asyncio.run(main())
