// Validates the prometheus-operator resources (ServiceMonitor, PodMonitor, PrometheusRule) in the
// YAML files given, with the schemas of npm's @kubernetes-models/prometheus-operator (generated from
// the operator's Go types). Core kinds are left to kubernetes-validate.
//   node .ci/validate-operator-kinds.mjs NODE_MODULES_DIR FILE...
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";

const [modules, ...files] = process.argv.slice(2);
const load = (p) => import(pathToFileURL(resolve(modules, p)).href);
const yaml = await load("js-yaml/dist/js-yaml.mjs");
const v1 = "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";
const models = {};
for (const kind of ["ServiceMonitor", "PodMonitor", "PrometheusRule"]) {
  models[kind] = (await load(`${v1}/${kind}.js`))[kind];
}

let failed = false;
let checked = 0;
for (const file of files) {
  for (const doc of yaml.loadAll(readFileSync(file, "utf8"))) {
    if (!doc || doc.apiVersion !== "monitoring.coreos.com/v1") continue;
    const Model = models[doc.kind];
    const where = `${file}: ${doc.kind}/${doc.metadata?.name}`;
    if (!Model) {
      console.error(`${where}: no schema for this kind`);
      failed = true;
      continue;
    }
    try {
      new Model(doc).validate();
      checked++;
      console.log(`${where}: valid`);
    } catch (e) {
      console.error(`${where}: ${e.message}`);
      failed = true;
    }
  }
}
if (checked === 0) {
  console.error("no prometheus-operator resource found");
  failed = true;
}
process.exit(failed ? 1 : 0);
