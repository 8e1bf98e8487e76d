"""Checks of the deployment pack that no schema expresses, for .ci/validate-deploy.sh.

Schemas say a Deployment or a ServiceMonitor is well formed; these say the pieces fit together:
the ServiceMonitor/PodMonitor select what the Service/Deployment label and expose, the Deployment
is hardened as the README promises, every --rules file is in the rules ConfigMap, and the
PrometheusRule holds exactly examples/prometheus/alerts.yaml's groups.

  deploy_checks.py split RENDERED OUTDIR      core kinds -> OUTDIR/core.yaml, operator kinds ->
                                              OUTDIR/operator.yaml, rule groups -> OUTDIR/alerts.yaml
  deploy_checks.py check RENDERED             the structural checks below; exit 1 on any problem
  deploy_checks.py same-groups A B            two rules files hold equal groups
"""

import sys

import yaml

OPERATOR = "monitoring.coreos.com/v1"


def docs(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def split(rendered, outdir):
    all_docs = docs(rendered)
    core = [d for d in all_docs if d["apiVersion"] != OPERATOR]
    operator = [d for d in all_docs if d["apiVersion"] == OPERATOR]
    rules = [d for d in operator if d["kind"] == "PrometheusRule"]
    if len(rules) != 1:
        sys.exit(f"{rendered}: expected one PrometheusRule, found {len(rules)}")
    for name, content in (("core.yaml", core), ("operator.yaml", operator)):
        with open(f"{outdir}/{name}", "w", encoding="utf-8") as f:
            yaml.safe_dump_all(content, f, sort_keys=False)
    with open(f"{outdir}/alerts.yaml", "w", encoding="utf-8") as f:
        yaml.safe_dump(rules[0]["spec"], f, sort_keys=False)


def same_groups(a, b):
    ga, gb = docs(a)[0]["groups"], docs(b)[0]["groups"]
    if ga != gb:
        sys.exit(f"{a} and {b} hold different rule groups: run examples/kubernetes/generate.sh")


def selects(selector, labels):
    """A label selector (matchLabels only, as ours are) matches `labels`."""
    if set(selector) - {"matchLabels"}:
        return False
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


class Checker:
    def __init__(self, path):
        self.path = path
        self.problems = []
        self.by_kind = {}
        for d in docs(path):
            self.by_kind.setdefault(d["kind"], []).append(d)

    def one(self, kind):
        items = self.by_kind.get(kind, [])
        return items[0] if len(items) == 1 else None

    def expect(self, ok, what):
        if not ok:
            self.problems.append(f"{self.path}: {what}")

    def run(self):
        dep, svc, cm = self.one("Deployment"), self.one("Service"), None
        self.expect(dep is not None, "expected exactly one Deployment")
        self.expect(svc is not None, "expected exactly one Service")
        if dep is None or svc is None:
            return self.problems
        pod = dep["spec"]["template"]
        pod_labels = pod["metadata"].get("labels", {})
        container = next((c for c in pod["spec"]["containers"] if c["name"] == "exporter"), None)
        self.expect(container is not None, "no container named exporter")
        if container is None:
            return self.problems
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        self.expect(selects(dep["spec"]["selector"], pod_labels), "Deployment selector misses its pods")

        # Service -> pods
        self.expect(all(pod_labels.get(k) == v for k, v in svc["spec"]["selector"].items()),
                    f"Service selector {svc['spec']['selector']} misses the pods {pod_labels}")
        svc_ports = {p["name"]: p for p in svc["spec"]["ports"]}
        for p in svc_ports.values():
            self.expect(p["targetPort"] in ports or p["targetPort"] in ports.values(),
                        f"Service port {p['name']} targets {p['targetPort']}, not a container port")

        # Discovery: exactly one of ServiceMonitor / PodMonitor, matching what it scrapes.
        sms, pms = self.by_kind.get("ServiceMonitor", []), self.by_kind.get("PodMonitor", [])
        self.expect(len(sms) + len(pms) == 1,
                    f"expected one ServiceMonitor or one PodMonitor, found {len(sms)} and {len(pms)}")
        for sm in sms:
            self.expect(selects(sm["spec"]["selector"], svc["metadata"].get("labels", {})),
                        "ServiceMonitor selector misses the Service's labels")
            self.expect(svc["metadata"].get("labels", {}).get(sm["spec"].get("jobLabel", "")) == "sql-signal-exporter",
                        "ServiceMonitor's jobLabel does not give job=sql-signal-exporter (the alerts' job)")
            for ep in sm["spec"]["endpoints"]:
                self.expect(ep.get("port") in svc_ports, f"ServiceMonitor port {ep.get('port')} is not a Service port")
                self.expect(ep.get("path", "/metrics") == "/metrics", "ServiceMonitor path is not /metrics")
        for pm in pms:
            self.expect(selects(pm["spec"]["selector"], pod_labels), "PodMonitor selector misses the pods")
            self.expect(pod_labels.get(pm["spec"].get("jobLabel", "")) == "sql-signal-exporter",
                        "PodMonitor's jobLabel does not give job=sql-signal-exporter (the alerts' job)")
            for ep in pm["spec"]["podMetricsEndpoints"]:
                self.expect(ep.get("port") in ports, f"PodMonitor port {ep.get('port')} is not a container port")

        self.hardening(pod["spec"], container, ports)
        self.rules_mounted(pod["spec"], container)
        return self.problems

    def hardening(self, spec, c, ports):
        psc, sc = spec.get("securityContext", {}), c.get("securityContext", {})
        self.expect(psc.get("runAsNonRoot") is True, "runAsNonRoot is not true")
        self.expect(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "seccomp is not RuntimeDefault")
        self.expect(sc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem is not true")
        self.expect(sc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation is not false")
        self.expect(sc.get("capabilities", {}).get("drop") == ["ALL"], "capabilities are not drop [ALL]")
        for probe, path in (("livenessProbe", "/-/healthy"), ("readinessProbe", "/-/ready")):
            get = c.get(probe, {}).get("httpGet", {})
            self.expect(get.get("path") == path, f"{probe} is not GET {path}")
            self.expect(get.get("port") in ports or get.get("port") in ports.values(), f"{probe} port is not a container port")
        res = c.get("resources", {})
        self.expect("memory" in res.get("requests", {}) and "memory" in res.get("limits", {}),
                    "memory request and limit missing")
        dsn = [e for e in c.get("env", []) if e["name"] == "CONNECTION_STRING"]
        self.expect(len(dsn) == 1 and "secretKeyRef" in dsn[0].get("valueFrom", {}),
                    "CONNECTION_STRING does not come from a Secret")
        self.expect(not any("value" in e for e in c.get("env", []) if "DSN" in e["name"] or "CONNECTION" in e["name"]),
                    "a DSN is written in the manifest")

    def rules_mounted(self, spec, c):
        for m in c.get("volumeMounts", []):
            self.expect("subPath" not in m and "subPathExpr" not in m,
                        f"volumeMount {m['name']} uses subPath: ConfigMap updates would never arrive")
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        mount = next((m for m in c.get("volumeMounts", []) if m["mountPath"] == "/etc/sql-signal-exporter/rules"), None)
        self.expect(mount is not None, "nothing mounted at /etc/sql-signal-exporter/rules")
        if mount is None:
            return
        cm_name = volumes.get(mount["name"], {}).get("configMap", {}).get("name")
        cms = {d["metadata"]["name"]: d for d in self.by_kind.get("ConfigMap", [])}
        self.expect(cm_name in cms, f"the rules volume's ConfigMap {cm_name} is not in the manifests")
        keys = set(cms.get(cm_name, {}).get("data", {}))
        args = [a for a in c.get("args", []) if a.startswith("--rules=")]
        self.expect(args, "no --rules argument")
        for a in args:
            path = a.split("=", 1)[1]
            self.expect(path.startswith("/etc/sql-signal-exporter/rules/") and path.rsplit("/", 1)[1] in keys,
                        f"{a}: not a key of ConfigMap {cm_name} ({sorted(keys)})")


def main(argv):
    if len(argv) == 3 and argv[0] == "split":
        split(argv[1], argv[2])
    elif len(argv) == 3 and argv[0] == "same-groups":
        same_groups(argv[1], argv[2])
    elif len(argv) == 2 and argv[0] == "check":
        problems = Checker(argv[1]).run()
        for p in problems:
            print(p, file=sys.stderr)
        if problems:
            sys.exit(1)
        print(f"{argv[1]}: manifests fit together")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
