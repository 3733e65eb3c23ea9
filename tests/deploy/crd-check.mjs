// Validates the custom resources scripts/deploy-check.sh rendered from
// deploy/ against their controllers' schemas, at pinned versions:
//
// - Argo Rollouts `Rollout` and `AnalysisTemplate`: @kubernetes-models/argo-rollouts
//   2.0.0, generated from Argo Rollouts v1.9.0's API types;
// - Prometheus operator `ServiceMonitor`: @kubernetes-models/prometheus-operator
//   6.0.0, generated from prometheus-operator v0.91.0's API types;
// - Flagger `Canary`: no registry packages Flagger's CRD, so
//   flagger-canary-v1beta1.schema.json beside this file writes out, for the
//   fields the examples use, what Flagger v1.44.0's CRD defines.
//
// The kubernetes-models validators accept fields their schemas do not
// define, while `kubectl apply` refuses them (strict field validation) and
// the API server would prune them. So each object is validated through a
// proxy that records which fields the validator looked up: a field it
// never looked up, in an object whose schema names its fields, is one the
// CRD does not define. An object whose schema names no field (Argo's
// `jsonBody`, free-form by the CRD) is not looked into.
//
//   node crd-check.mjs custom-resources.json
// prints one line per object and exits 1 when any object is refused.

import { readFileSync } from "node:fs";
import Ajv from "ajv";
import { Rollout } from "@kubernetes-models/argo-rollouts/argoproj.io/v1alpha1/Rollout";
import { AnalysisTemplate } from "@kubernetes-models/argo-rollouts/argoproj.io/v1alpha1/AnalysisTemplate";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";

const flaggerSchema = JSON.parse(
  readFileSync(new URL("./flagger-canary-v1beta1.schema.json", import.meta.url), "utf8"),
);
const ajv = new Ajv({ allErrors: true, strict: true, allowUnionTypes: true });
const validateCanary = ajv.compile(flaggerSchema);

/** A model's validator run over `data` itself (the model's constructor would copy it). */
const modelCheck = (model, source) => (data) => {
  const { proxy, seen } = tracked(data);
  const problems = [];
  try {
    model.prototype.validate.call(proxy);
  } catch (e) {
    problems.push(e.message);
  }
  problems.push(...strays(data, seen, "").map((p) => `${p}: not a field the CRD defines`));
  return { problems, source };
};

const checks = {
  "argoproj.io/v1alpha1 Rollout": modelCheck(Rollout, "Argo Rollouts v1.9.0 types"),
  "argoproj.io/v1alpha1 AnalysisTemplate": modelCheck(AnalysisTemplate, "Argo Rollouts v1.9.0 types"),
  "monitoring.coreos.com/v1 ServiceMonitor": modelCheck(ServiceMonitor, "prometheus-operator v0.91.0 types"),
  "flagger.app/v1beta1 Canary": (data) => {
    const problems = validateCanary(data)
      ? []
      : validateCanary.errors.map(
          (e) => `${e.instancePath || "/"}: ${e.message}${e.params?.additionalProperty ? ` (\`${e.params.additionalProperty}\`)` : ""}`,
        );
    problems.push(...flaggerHooks(data));
    return { problems, source: "Flagger v1.44.0 CRD fields" };
  },
};

/** Every webhook type the CRD knows is used, each pointing at its own tollgate route with a token and a version. */
function flaggerHooks(canary) {
  const problems = [];
  const hooks = canary?.spec?.analysis?.webhooks ?? [];
  const types =
    flaggerSchema.properties.spec.properties.analysis.properties.webhooks.items.properties.type.enum.filter(
      (t) => t !== "",
    );
  for (const t of types) {
    if (!hooks.some((h) => h.type === t)) problems.push(`no webhook of type \`${t}\``);
  }
  for (const h of hooks) {
    const path = new URL(h.url).pathname;
    if (!/^\/v1\/compat\/flagger\/[^/]+\/[^/]+$/.test(path) || !path.endsWith(`/${h.type}`)) {
      problems.push(`webhook \`${h.name}\`: ${h.url} is not tollgate's route for \`${h.type}\``);
    }
    for (const key of ["token", "version", "stage"]) {
      if (typeof h.metadata?.[key] !== "string") problems.push(`webhook \`${h.name}\`: no metadata.${key}`);
    }
  }
  return problems;
}

/** `root` behind proxies that record, per object, the fields looked up. */
function tracked(root) {
  const seen = new WeakMap();
  const proxies = new WeakMap();
  const wrap = (value) => {
    if (value === null || typeof value !== "object") return value;
    if (proxies.has(value)) return proxies.get(value);
    seen.set(value, new Set());
    const proxy = new Proxy(value, {
      get(target, key, receiver) {
        if (typeof key === "string") seen.get(target).add(key);
        return wrap(Reflect.get(target, key, receiver));
      },
      has(target, key) {
        if (typeof key === "string") seen.get(target).add(key);
        return Reflect.has(target, key);
      },
    });
    proxies.set(value, proxy);
    return proxy;
  };
  return { proxy: wrap(root), seen };
}

/** The paths of fields present in `node` that its validator never looked up. */
function strays(node, seen, path) {
  if (node === null || typeof node !== "object") return [];
  if (Array.isArray(node)) return node.flatMap((v, i) => strays(v, seen, `${path}/${i}`));
  const read = seen.get(node);
  // Never looked into: a free-form object, or one the validator stopped at.
  if (!read || read.size === 0) return [];
  return Object.keys(node).flatMap((k) =>
    read.has(k) ? strays(node[k], seen, `${path}/${k}`) : [`${path}/${k}`],
  );
}

const objects = JSON.parse(readFileSync(process.argv[2], "utf8"));
let refused = 0;
for (const { file, object } of objects) {
  const id = `${object.kind} ${object.metadata?.namespace ?? ""}/${object.metadata?.name ?? "?"} (${file})`;
  const check = checks[`${object.apiVersion} ${object.kind}`];
  if (!check) {
    console.log(`FAIL ${id}: no CRD schema for ${object.apiVersion} ${object.kind}`);
    refused++;
    continue;
  }
  const { problems, source } = check(object);
  if (problems.length) {
    refused++;
    console.log(`FAIL ${id} against ${source}:`);
    for (const p of problems) console.log(`       ${p}`);
  } else {
    console.log(`ok   ${id} against ${source}`);
  }
}
process.exit(refused ? 1 : 0);
