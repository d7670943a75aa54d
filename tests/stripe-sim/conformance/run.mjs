// Conformance run: drives a running stripe-sim with Stripe's own Node client, captures every
// JSON body the sim sends (HTTP responses and webhook deliveries), and checks each object,
// recursively, against the types the client package declares for the API version it pins.
//
//   node run.mjs http://127.0.0.1:PORT [--json summary.json] [--python results.json]
//
// `--python` adds the steps and bodies of python_flows.py (Stripe's Python client, run
// against another sim) to the figures; its bodies are checked against the same reference.
//
// Exit status 0 only if every client step passed and every object conforms.

import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Stripe from 'stripe';
import { Reference, attribute, pattern, stripePackageDir } from './schema.mjs';
import { flows } from './flows.mjs';

const args = process.argv.slice(2);
const base = args.find((a) => a.startsWith('http'));
const jsonOut = args.includes('--json') ? args[args.indexOf('--json') + 1] : null;
const pythonResults = args.includes('--python') ? args[args.indexOf('--python') + 1] : null;
if (!base) {
  console.error('usage: node run.mjs http://127.0.0.1:PORT [--json out.json]');
  process.exit(2);
}
const url = new URL(base);

const pkg = JSON.parse(fs.readFileSync(path.join(stripePackageDir(), 'package.json'), 'utf8'));
const pinned = Stripe.API_VERSION ?? new Stripe('sk_test_x').getApiField('version');
const expected = JSON.parse(fs.readFileSync(path.join(path.dirname(fileURLToPath(import.meta.url)), 'package.json'), 'utf8'));
console.log(`reference: npm stripe ${pkg.version} (API ${pinned}), typescript ${(await import('typescript')).default.version}`);

// Every body the sim sends, with where it came from.
const captured = [];
const recordingFetch = async (input, init) => {
  const res = await fetch(input, init);
  const text = await res.clone().text();
  const where = `${init?.method ?? 'GET'} ${new URL(typeof input === 'string' ? input : input.url).pathname}`;
  captured.push({ where, status: res.status, text, version: res.headers.get('stripe-version') });
  return res;
};

const stripe = new Stripe('sk_test_conformance', {
  host: url.hostname,
  port: url.port,
  protocol: url.protocol.replace(':', ''),
  httpClient: Stripe.createFetchHttpClient(recordingFetch),
  maxNetworkRetries: 0,
  telemetry: false,
});

// A webhook receiver on loopback: deliveries are captured and their signatures verified with
// the client's own `webhooks.constructEvent`.
const hooks = { secret: null, received: [], badSignatures: 0 };
const receiver = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks).toString('utf8');
    try {
      const event = stripe.webhooks.constructEvent(body, req.headers['stripe-signature'], hooks.secret);
      hooks.received.push(event.type);
      captured.push({ where: `webhook ${event.type}`, status: 200, text: body, version: null });
      res.writeHead(200).end('{}');
    } catch (e) {
      hooks.badSignatures += 1;
      res.writeHead(400).end(String(e.message));
    }
  });
});
await new Promise((ok) => receiver.listen(0, '127.0.0.1', ok));
const receiverUrl = `http://127.0.0.1:${receiver.address().port}/hook`;

// --- flows -------------------------------------------------------------------------------
const steps = [];
for (const flow of flows) {
  for (const step of flow.steps) {
    const name = `${flow.name}: ${step.name}`;
    try {
      await step.run(stripe, flow.ctx, { receiverUrl, hooks });
      steps.push({ name, ok: true });
    } catch (e) {
      steps.push({ name, ok: false, error: e?.message ?? String(e) });
      // Later steps of a flow build on earlier ones.
      const rest = flow.steps.slice(flow.steps.indexOf(step) + 1);
      for (const r of rest) steps.push({ name: `${flow.name}: ${r.name}`, ok: false, error: 'skipped after an earlier failure' });
      break;
    }
  }
}
// Give the sim's webhook queue a moment to drain to the receiver.
for (let i = 0; i < 50 && hooks.secret; i++) {
  const before = hooks.received.length;
  await new Promise((ok) => setTimeout(ok, 100));
  if (i > 5 && hooks.received.length === before) break;
}
receiver.close();

// The Python client's run, if given: its steps count like ours, its bodies are checked too.
let python = null;
if (pythonResults) {
  python = JSON.parse(fs.readFileSync(pythonResults, 'utf8'));
  if (python.api_version !== pinned) {
    steps.push({ name: 'python: client pins this API version', ok: false, error: `${python.client} pins ${python.api_version}` });
  }
  steps.push(...python.steps);
  captured.push(...python.bodies);
}

// --- checking ----------------------------------------------------------------------------
const ref = new Reference();
const perType = new Map();
const drift = new Map();
let bodies = 0;
let orphanIssues = 0;
let wrongVersion = 0;
for (const c of captured) {
  if (c.status >= 400) continue; // errors are checked by the steps that expect them
  let value;
  try {
    value = JSON.parse(c.text);
  } catch {
    drift.set(`${c.where}: body is not JSON`, 1);
    continue;
  }
  bodies += 1;
  if (c.version && c.version !== pinned) wrongVersion += 1;
  const { objects, orphans } = attribute(ref.checkByObject(value));
  orphanIssues += orphans.length;
  for (const o of objects) {
    const row = perType.get(o.object) ?? { checked: 0, conforming: 0 };
    row.checked += 1;
    if (o.issues.length === 0) row.conforming += 1;
    perType.set(o.object, row);
    for (const i of o.issues) {
      const rel = i.path.slice(o.path.length).replace(/^\./, '') || '(itself)';
      const key = `${o.object}: ${pattern(rel)}: ${i.msg.replace(/\d{6,}/g, 'N')}`;
      drift.set(key, (drift.get(key) ?? 0) + 1);
    }
  }
}

// Negative controls: the checker must see drift planted in a real object, so that a broken
// reference (say, types that failed to resolve and became `any`) cannot pass vacuously.
const controls = [];
const sample = captured.map((c) => (c.status < 400 ? JSON.parse(c.text) : null)).find((v) => v?.object === 'subscription');
if (sample) {
  const planted = [
    ['a missing required field', (o) => delete o.items.data[0].current_period_end],
    ['a field the version does not have', (o) => (o.items.data[0].plan.bogus_field = 1)],
    ['null for an optional field', (o) => (o[ref.optionalFields('subscription')[0]] = null)],
    ['an enum value the version does not have', (o) => (o.status = 'almost_active')],
    ['a wrong scalar type', (o) => (o.created = String(o.created))],
    ['an object where an id or object is expected', (o) => (o.customer = { id: o.customer })],
  ];
  for (const [what, plant] of planted) {
    const copy = structuredClone(sample);
    plant(copy);
    const found = ref.checkByObject(JSON.parse(JSON.stringify(copy))).issues.length > 0;
    controls.push({ what, found });
  }
} else {
  controls.push({ what: 'a subscription to plant drift in', found: false });
}
const blind = controls.filter((c) => !c.found);
console.log(`\nnegative controls: ${controls.length - blind.length} of ${controls.length} planted drifts detected`);
for (const c of blind) console.log(`  NOT DETECTED: ${c.what}`);

const passed = steps.filter((s) => s.ok).length;
console.log(`\nclient flow steps: ${passed} of ${steps.length} passed`);
if (python) {
  const py = steps.filter((s) => s.name.startsWith('python: '));
  console.log(`  node (stripe ${pkg.version}): ${passed - py.filter((s) => s.ok).length} of ${steps.length - py.length}; python (${python.client}): ${py.filter((s) => s.ok).length} of ${py.length}`);
}
for (const s of steps.filter((s) => !s.ok)) console.log(`  FAILED ${s.name}: ${s.error}`);
console.log(`webhooks received: ${hooks.received.length} (bad signatures: ${hooks.badSignatures})`);
console.log(`\nobjects checked per type (${bodies} bodies):`);
let total = 0;
let good = 0;
for (const [t, r] of [...perType.entries()].sort()) {
  total += r.checked;
  good += r.conforming;
  console.log(`  ${t.padEnd(28)} ${String(r.conforming).padStart(5)} of ${String(r.checked).padStart(5)} conform`);
}
console.log(`  ${'all'.padEnd(28)} ${String(good).padStart(5)} of ${String(total).padStart(5)} conform`);
if (drift.size) {
  console.log('\ndrift (object type: field: problem  ×occurrences):');
  for (const [k, n] of [...drift.entries()].sort()) console.log(`  ${k}  ×${n}`);
}
if (wrongVersion) console.log(`\n${wrongVersion} responses carried a Stripe-Version other than ${pinned}`);

const summary = { reference: `stripe@${pkg.version}`, api_version: pinned, steps: { passed, total: steps.length }, objects: { checked: total, conforming: good }, per_type: Object.fromEntries(perType), drift: Object.fromEntries(drift), webhooks: hooks.received.length, controls: { detected: controls.length - blind.length, total: controls.length } };
if (jsonOut) fs.writeFileSync(jsonOut, JSON.stringify(summary, null, 2));
const ok = blind.length === 0 && passed === steps.length && total > 0 && good === total && orphanIssues === 0 && wrongVersion === 0 && hooks.badSignatures === 0 && expected.dependencies.stripe === pkg.version;
console.log(`\nconformance: ${ok ? 'PASS' : 'FAIL'}`);
process.exit(ok ? 0 : 1);
