// Validates ServiceMonitor objects (a JSON array on stdin) with the Prometheus Operator's CRD
// schema as the npm package @kubernetes-models/prometheus-operator carries it; the package is
// found under the directory given as the first argument (`make k8s-tools` installs it).
// Prints one line per object; exits 1 if any is invalid or not a ServiceMonitor.
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

const tools = process.argv[2];
const module = `${tools}/node_modules/@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/index.js`;
const { ServiceMonitor } = await import(pathToFileURL(module).href);
const docs = JSON.parse(readFileSync(0, 'utf8'));
let failed = false;
for (const doc of docs) {
  const name = `${doc.kind}/${doc.metadata?.name}`;
  if (doc.apiVersion !== 'monitoring.coreos.com/v1' || doc.kind !== 'ServiceMonitor') {
    console.log(`${name}: not a monitoring.coreos.com/v1 ServiceMonitor`);
    failed = true;
    continue;
  }
  try {
    new ServiceMonitor(doc).validate();
    console.log(`${name}: valid`);
  } catch (e) {
    console.log(`${name}: ${e.message}`);
    failed = true;
  }
}
process.exit(failed ? 1 : 0);
