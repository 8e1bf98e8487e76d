#!/usr/bin/env bash
# Writes a copy of alerts.yaml for a test: every `for:` becomes FOR (default 2s) and every group
# `interval:` becomes INTERVAL (default 1s), so alerts fire within seconds. Nothing else changes.
#   examples/prometheus/shorten-for.sh > "$dir/alerts.yaml"            # for: 2s, interval: 1s
#   FOR=0s examples/prometheus/shorten-for.sh > "$dir/alerts.yaml"
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
sed -E -e "s/^( +)for: [0-9]+[smh]\$/\1for: ${FOR:-2s}/" \
       -e "s/^( +)interval: [0-9]+[smh]\$/\1interval: ${INTERVAL:-1s}/" \
       "$here/alerts.yaml"
