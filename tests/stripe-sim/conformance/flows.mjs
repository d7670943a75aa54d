// Ordinary Stripe Billing flows, written as a Stripe integrator would write them with the
// official Node client. Each step asserts what Stripe documents for the step; the objects the
// steps receive are checked against the published types separately (run.mjs).

const DAY = 86400;

function expect(cond, what) {
  if (!cond) throw new Error(`expected ${what}`);
}

function eq(actual, wanted, what) {
  if (actual !== wanted) throw new Error(`expected ${what} to be ${JSON.stringify(wanted)}, got ${JSON.stringify(actual)}`);
}

async function rejects(promise, check) {
  try {
    await promise;
  } catch (e) {
    check(e);
    return;
  }
  throw new Error('expected the request to fail');
}

function flow(name, steps) {
  return { name, ctx: {}, steps: steps.map(([n, run]) => ({ name: n, run })) };
}

// Shared across flows: the catalogue and a clock start.
const shared = {};
const start = Math.floor(Date.UTC(2026, 0, 5, 12) / 1000);

async function clockCustomer(stripe, ctx, name, pm) {
  ctx.clock = await stripe.testHelpers.testClocks.create({ frozen_time: start, name });
  ctx.time = start;
  ctx.customer = await stripe.customers.create({ email: `${name}@example.com`, name, test_clock: ctx.clock.id });
  if (pm) {
    ctx.pm = await stripe.paymentMethods.attach(pm, { customer: ctx.customer.id });
    await stripe.customers.update(ctx.customer.id, { invoice_settings: { default_payment_method: ctx.pm.id } });
  }
}

async function advance(stripe, ctx, seconds) {
  ctx.time += seconds;
  const clock = await stripe.testHelpers.testClocks.advance(ctx.clock.id, { frozen_time: ctx.time });
  eq(clock.frozen_time, ctx.time, 'the clock time');
  const again = await stripe.testHelpers.testClocks.retrieve(ctx.clock.id);
  eq(again.status, 'ready', 'the clock status after advancing');
}

export const flows = [
  flow('catalogue', [
    ['create a product', async (stripe) => {
      shared.product = await stripe.products.create({ name: 'Conformance Premium', metadata: { tier: 'premium' } });
      eq(shared.product.object, 'product', 'object');
    }],
    ['create a monthly price', async (stripe) => {
      shared.premium = await stripe.prices.create({ product: shared.product.id, unit_amount: 999, currency: 'usd', recurring: { interval: 'month' }, lookup_key: 'conf_premium' });
      eq(shared.premium.recurring.interval, 'month', 'the interval');
    }],
    ['create a price with product_data', async (stripe) => {
      shared.enterprise = await stripe.prices.create({ product_data: { name: 'Conformance Enterprise' }, unit_amount: 4999, currency: 'usd', recurring: { interval: 'month' }, lookup_key: 'conf_enterprise' });
      expect(typeof shared.enterprise.product === 'string', 'an unexpanded product id');
    }],
    ['retrieve a price with its product expanded', async (stripe) => {
      const p = await stripe.prices.retrieve(shared.premium.id, { expand: ['product'] });
      eq(p.product.id, shared.product.id, 'the expanded product');
    }],
    ['list prices by lookup key', async (stripe) => {
      const l = await stripe.prices.list({ lookup_keys: ['conf_premium', 'conf_enterprise'] });
      eq(l.data.length, 2, 'the number of prices');
    }],
    ['update and list products', async (stripe) => {
      const p = await stripe.products.update(shared.product.id, { description: 'For the conformance run' });
      eq(p.description, 'For the conformance run', 'the description');
      const l = await stripe.products.list({ limit: 10 });
      expect(l.data.some((x) => x.id === shared.product.id), 'the product in the list');
    }],
  ]),

  flow('webhook endpoint', [
    ['create an endpoint for every event', async (stripe, ctx, env) => {
      ctx.ep = await stripe.webhookEndpoints.create({ url: env.receiverUrl, enabled_events: ['*'], description: 'conformance' });
      expect(ctx.ep.secret?.startsWith('whsec_'), 'a signing secret on create');
      env.hooks.secret = ctx.ep.secret;
    }],
    ['retrieve, update and list endpoints', async (stripe, ctx) => {
      const r = await stripe.webhookEndpoints.retrieve(ctx.ep.id);
      eq(r.secret, undefined, 'the secret after creation');
      const u = await stripe.webhookEndpoints.update(ctx.ep.id, { description: 'conformance run' });
      eq(u.description, 'conformance run', 'the description');
      const l = await stripe.webhookEndpoints.list();
      expect(l.data.some((e) => e.id === ctx.ep.id), 'the endpoint in the list');
    }],
  ]),

  flow('paid subscription', [
    ['customer on a test clock with a default card', (stripe, ctx) => clockCustomer(stripe, ctx, 'paid', 'pm_card_visa')],
    ['subscribe and pay at once', async (stripe, ctx) => {
      ctx.sub = await stripe.subscriptions.create({ customer: ctx.customer.id, items: [{ price: shared.premium.id }], expand: ['latest_invoice.payments'] });
      eq(ctx.sub.status, 'active', 'status');
      eq(ctx.sub.latest_invoice.status, 'paid', 'the first invoice status');
      eq(ctx.sub.latest_invoice.amount_paid, 999, 'amount paid');
      ctx.firstInvoice = ctx.sub.latest_invoice.id;
    }],
    ['retrieve the invoice and its payment intent', async (stripe, ctx) => {
      const inv = await stripe.invoices.retrieve(ctx.firstInvoice, { expand: ['payments'] });
      eq(inv.billing_reason, 'subscription_create', 'billing reason');
      eq(inv.parent.subscription_details.subscription, ctx.sub.id, 'the parent subscription');
      const pi = inv.payments.data[0].payment.payment_intent;
      const intent = await stripe.paymentIntents.retrieve(typeof pi === 'string' ? pi : pi.id);
      eq(intent.status, 'succeeded', 'the payment intent status');
      eq(intent.amount, 999, 'the payment intent amount');
    }],
    ['invoice lines', async (stripe, ctx) => {
      const lines = await stripe.invoices.listLineItems(ctx.firstInvoice);
      eq(lines.data.length, 1, 'the number of lines');
      eq(lines.data[0].pricing.price_details.price, shared.premium.id, 'the line price');
    }],
    ['renew after a month on the clock', async (stripe, ctx) => {
      await advance(stripe, ctx, 32 * DAY);
      const l = await stripe.invoices.list({ subscription: ctx.sub.id });
      eq(l.data.length, 2, 'the number of invoices');
      eq(l.data[0].billing_reason, 'subscription_cycle', 'the renewal billing reason');
      eq(l.data[0].status, 'paid', 'the renewal status');
    }],
    ['change tier with prorations invoiced at once', async (stripe, ctx) => {
      const sub = await stripe.subscriptions.retrieve(ctx.sub.id);
      const item = sub.items.data[0];
      const up = await stripe.subscriptions.update(ctx.sub.id, { items: [{ id: item.id, price: shared.enterprise.id }], proration_behavior: 'always_invoice', expand: ['latest_invoice'] });
      eq(up.items.data[0].price.id, shared.enterprise.id, 'the new price');
      eq(up.latest_invoice.billing_reason, 'subscription_update', 'the proration invoice reason');
      expect(up.latest_invoice.lines.data.some((l) => l.parent.subscription_item_details?.proration), 'proration lines');
    }],
    ['change quantity with pending prorations', async (stripe, ctx) => {
      const sub = await stripe.subscriptions.retrieve(ctx.sub.id);
      await stripe.subscriptions.update(ctx.sub.id, { items: [{ id: sub.items.data[0].id, quantity: 2 }], proration_behavior: 'create_prorations' });
      const pending = await stripe.invoiceItems.list({ customer: ctx.customer.id, pending: true });
      expect(pending.data.length >= 2, 'pending proration invoice items');
      expect(pending.data.every((i) => i.proration === true), 'every pending item a proration');
    }],
    ['cancel at period end, then undo', async (stripe, ctx) => {
      const c = await stripe.subscriptions.update(ctx.sub.id, { cancel_at_period_end: true });
      eq(c.cancel_at_period_end, true, 'cancel_at_period_end');
      eq(c.cancel_at, c.items.data[0].current_period_end, 'cancel_at at the period end');
      const u = await stripe.subscriptions.update(ctx.sub.id, { cancel_at_period_end: false });
      eq(u.cancel_at, null, 'cancel_at after undoing');
    }],
    ['cancel now', async (stripe, ctx) => {
      const c = await stripe.subscriptions.cancel(ctx.sub.id, { cancellation_details: { comment: 'conformance' } });
      eq(c.status, 'canceled', 'status');
      expect(c.ended_at > 0, 'ended_at');
    }],
    ['list subscriptions with status all', async (stripe, ctx) => {
      const l = await stripe.subscriptions.list({ customer: ctx.customer.id, status: 'all' });
      eq(l.data.length, 1, 'the number of subscriptions');
    }],
  ]),

  flow('trial without a card', [
    ['customer without a card', (stripe, ctx) => clockCustomer(stripe, ctx, 'trial-nocard', null)],
    ['seven-day trial that cancels without a card', async (stripe, ctx) => {
      ctx.sub = await stripe.subscriptions.create({ customer: ctx.customer.id, items: [{ price: shared.premium.id }], trial_period_days: 7, trial_settings: { end_behavior: { missing_payment_method: 'cancel' } } });
      eq(ctx.sub.status, 'trialing', 'status');
      eq(ctx.sub.trial_end, start + 7 * DAY, 'trial_end');
    }],
    ['trial ends and the subscription is canceled', async (stripe, ctx) => {
      await advance(stripe, ctx, 8 * DAY);
      const s = await stripe.subscriptions.retrieve(ctx.sub.id);
      eq(s.status, 'canceled', 'status');
    }],
  ]),

  flow('trial with a card', [
    ['customer with a card', (stripe, ctx) => clockCustomer(stripe, ctx, 'trial-card', 'pm_card_mastercard')],
    ['three-day trial', async (stripe, ctx) => {
      ctx.sub = await stripe.subscriptions.create({ customer: ctx.customer.id, items: [{ price: shared.premium.id }], trial_end: start + 3 * DAY, expand: ['latest_invoice'] });
      eq(ctx.sub.status, 'trialing', 'status');
      eq(ctx.sub.latest_invoice.amount_due, 0, 'the trial invoice amount');
    }],
    ['trial ends into a paid period', async (stripe, ctx) => {
      await advance(stripe, ctx, 4 * DAY);
      const s = await stripe.subscriptions.retrieve(ctx.sub.id, { expand: ['latest_invoice'] });
      eq(s.status, 'active', 'status');
      eq(s.latest_invoice.status, 'paid', 'the first paid invoice');
    }],
    ['end a second trial early by update', async (stripe, ctx) => {
      const t = await stripe.subscriptions.create({ customer: ctx.customer.id, items: [{ price: shared.enterprise.id }], trial_period_days: 14 });
      const s = await stripe.subscriptions.update(t.id, { trial_end: 'now' });
      eq(s.status, 'active', 'status after trial_end=now with a card');
    }],
  ]),

  flow('incomplete with 3D Secure', [
    ['customer with a card that needs authentication', (stripe, ctx) => clockCustomer(stripe, ctx, 'threeds', 'pm_card_authenticationRequired')],
    ['default_incomplete leaves it incomplete', async (stripe, ctx) => {
      ctx.sub = await stripe.subscriptions.create({ customer: ctx.customer.id, items: [{ price: shared.premium.id }], payment_behavior: 'default_incomplete', expand: ['latest_invoice.payments', 'latest_invoice.confirmation_secret'] });
      eq(ctx.sub.status, 'incomplete', 'status');
      eq(ctx.sub.latest_invoice.status, 'open', 'the invoice status');
      expect(ctx.sub.latest_invoice.confirmation_secret?.client_secret, 'a confirmation secret');
      const pi = ctx.sub.latest_invoice.payments.data[0].payment.payment_intent;
      ctx.intent = typeof pi === 'string' ? pi : pi.id;
      const intent = await stripe.paymentIntents.retrieve(ctx.intent);
      expect(['requires_payment_method', 'requires_confirmation'].includes(intent.status), `an unconfirmed payment intent (got ${intent.status})`);
    }],
    ['nothing was charged before confirmation', async (stripe, ctx) => {
      const inv = await stripe.invoices.retrieve(ctx.sub.latest_invoice.id);
      eq(inv.amount_paid, 0, 'amount paid');
      eq(inv.attempt_count, 0, 'attempt count');
    }],
    ['confirm the payment intent on session', async (stripe, ctx) => {
      const intent = await stripe.paymentIntents.confirm(ctx.intent, { payment_method: ctx.pm.id });
      eq(intent.status, 'succeeded', 'the payment intent status');
      const s = await stripe.subscriptions.retrieve(ctx.sub.id);
      eq(s.status, 'active', 'status after confirmation');
    }],
    ['an off-session renewal needs action', async (stripe, ctx) => {
      await advance(stripe, ctx, 32 * DAY);
      const s = await stripe.subscriptions.retrieve(ctx.sub.id, { expand: ['latest_invoice.payments'] });
      eq(s.status, 'past_due', 'status');
      const pi = s.latest_invoice.payments.data[0].payment.payment_intent;
      const intent = await stripe.paymentIntents.retrieve(typeof pi === 'string' ? pi : pi.id);
      eq(intent.status, 'requires_action', 'the renewal payment intent status');
    }],
  ]),

  flow('default_incomplete with a plain card', [
    ['customer with a card', (stripe, ctx) => clockCustomer(stripe, ctx, 'default-incomplete', 'pm_card_visa')],
    ['the subscription waits for confirmation', async (stripe, ctx) => {
      ctx.sub = await stripe.subscriptions.create({ customer: ctx.customer.id, items: [{ price: shared.premium.id }], payment_behavior: 'default_incomplete', expand: ['latest_invoice'] });
      eq(ctx.sub.status, 'incomplete', 'status');
      eq(ctx.sub.latest_invoice.status, 'open', 'the invoice status');
      eq(ctx.sub.latest_invoice.amount_paid, 0, 'amount paid');
    }],
    ['paying the invoice activates it', async (stripe, ctx) => {
      const inv = await stripe.invoices.pay(ctx.sub.latest_invoice.id);
      eq(inv.status, 'paid', 'the invoice status');
      const s = await stripe.subscriptions.retrieve(ctx.sub.id);
      eq(s.status, 'active', 'status');
    }],
  ]),

  flow('failed payment, then paid by hand', [
    ['customer whose card is declined', (stripe, ctx) => clockCustomer(stripe, ctx, 'declined', 'pm_card_chargeCustomerFail')],
    ['allow_incomplete leaves it incomplete', async (stripe, ctx) => {
      ctx.sub = await stripe.subscriptions.create({ customer: ctx.customer.id, items: [{ price: shared.premium.id }], expand: ['latest_invoice'] });
      eq(ctx.sub.status, 'incomplete', 'status');
      eq(ctx.sub.latest_invoice.attempt_count, 1, 'attempt count');
    }],
    ['pay the invoice with a new card', async (stripe, ctx) => {
      const pm = await stripe.paymentMethods.attach('pm_card_visa', { customer: ctx.customer.id });
      const inv = await stripe.invoices.pay(ctx.sub.latest_invoice.id, { payment_method: pm.id });
      eq(inv.status, 'paid', 'the invoice status');
      eq((await stripe.subscriptions.retrieve(ctx.sub.id)).status, 'active', 'status');
    }],
    ['a declined card cannot be attached', async (stripe, ctx) => {
      await rejects(stripe.paymentMethods.attach('pm_card_chargeDeclined', { customer: ctx.customer.id }), (e) => {
        eq(e.type, 'StripeCardError', 'error type');
        eq(e.code, 'card_declined', 'error code');
      });
    }],
  ]),

  flow('scheduled cancellation', [
    ['customer with a card', (stripe, ctx) => clockCustomer(stripe, ctx, 'cancel-at', 'pm_card_amex')],
    ['subscribe with cancel_at in the first period', async (stripe, ctx) => {
      ctx.sub = await stripe.subscriptions.create({ customer: ctx.customer.id, items: [{ price: shared.premium.id }], cancel_at: start + 15 * DAY });
      eq(ctx.sub.cancel_at, start + 15 * DAY, 'cancel_at');
      eq(ctx.sub.cancel_at_period_end, false, 'cancel_at_period_end');
      eq(ctx.sub.items.data[0].current_period_end, start + 15 * DAY, 'the period end');
    }],
    ['it ends at cancel_at', async (stripe, ctx) => {
      await advance(stripe, ctx, 16 * DAY);
      const s = await stripe.subscriptions.retrieve(ctx.sub.id);
      eq(s.status, 'canceled', 'status');
      eq(s.ended_at, start + 15 * DAY, 'ended_at');
    }],
  ]),

  flow('pause, resume, void, uncollectible', [
    ['customer without a card', (stripe, ctx) => clockCustomer(stripe, ctx, 'pause', null)],
    ['a trial that pauses without a card', async (stripe, ctx) => {
      ctx.sub = await stripe.subscriptions.create({ customer: ctx.customer.id, items: [{ price: shared.premium.id }], trial_period_days: 2, trial_settings: { end_behavior: { missing_payment_method: 'pause' } } });
      await advance(stripe, ctx, 3 * DAY);
      eq((await stripe.subscriptions.retrieve(ctx.sub.id)).status, 'paused', 'status after the trial');
    }],
    ['add a card and resume', async (stripe, ctx) => {
      const pm = await stripe.paymentMethods.attach('pm_card_visa_debit', { customer: ctx.customer.id });
      await stripe.customers.update(ctx.customer.id, { invoice_settings: { default_payment_method: pm.id } });
      const s = await stripe.subscriptions.resume(ctx.sub.id, { billing_cycle_anchor: 'now', expand: ['latest_invoice'] });
      eq(s.status, 'active', 'status after resuming');
      eq(s.latest_invoice.status, 'paid', 'the resume invoice');
    }],
    ['expand the customer, payment method and products', async (stripe, ctx) => {
      const s = await stripe.subscriptions.retrieve(ctx.sub.id, { expand: ['customer', 'items.data.price.product', 'latest_invoice.payments.data.payment.payment_intent'] });
      eq(s.customer.id, ctx.customer.id, 'the expanded customer');
      eq(s.items.data[0].price.product.id, shared.product.id, 'the expanded product');
      const c = await stripe.customers.retrieve(ctx.customer.id, { expand: ['invoice_settings.default_payment_method', 'test_clock'] });
      eq(c.test_clock.id, ctx.clock.id, 'the expanded clock');
    }],
    ['void an open invoice', async (stripe, ctx) => {
      ctx.bad = await stripe.customers.create({ email: 'void@example.com', test_clock: ctx.clock.id });
      const pm = await stripe.paymentMethods.attach('pm_card_chargeCustomerFail', { customer: ctx.bad.id });
      await stripe.customers.update(ctx.bad.id, { invoice_settings: { default_payment_method: pm.id } });
      const s = await stripe.subscriptions.create({ customer: ctx.bad.id, items: [{ price: shared.premium.id }] });
      const v = await stripe.invoices.voidInvoice(s.latest_invoice);
      eq(v.status, 'void', 'the voided invoice');
    }],
    ['mark a failed renewal uncollectible', async (stripe, ctx) => {
      const cus = await stripe.customers.create({ email: 'dunning@example.com', test_clock: ctx.clock.id });
      const good = await stripe.paymentMethods.attach('pm_card_visa', { customer: cus.id });
      const s = await stripe.subscriptions.create({ customer: cus.id, items: [{ price: shared.premium.id }], default_payment_method: good.id });
      eq(s.status, 'active', 'status');
      const failing = await stripe.paymentMethods.attach('pm_card_chargeCustomerFail', { customer: cus.id });
      await stripe.subscriptions.update(s.id, { default_payment_method: failing.id });
      await advance(stripe, ctx, 32 * DAY);
      const after = await stripe.subscriptions.retrieve(s.id, { expand: ['latest_invoice'] });
      eq(after.status, 'past_due', 'status after the failed renewal');
      expect(after.latest_invoice.next_payment_attempt > ctx.time, 'a scheduled retry');
      const u = await stripe.invoices.markUncollectible(after.latest_invoice.id);
      eq(u.status, 'uncollectible', 'the invoice status');
      const open = await stripe.invoices.list({ customer: cus.id, status: 'uncollectible' });
      eq(open.data.length, 1, 'uncollectible invoices');
    }],
  ]),

  flow('customers and payment methods', [
    ['create, update and search a customer', async (stripe, ctx) => {
      ctx.customer = await stripe.customers.create({ email: 'search-me@example.com', name: 'Search Me', metadata: { user_id: 'u-42' } });
      const u = await stripe.customers.update(ctx.customer.id, { phone: '+15555550100' });
      eq(u.phone, '+15555550100', 'phone');
      const found = await stripe.customers.search({ query: "metadata['user_id']:'u-42'" });
      eq(found.data.length, 1, 'search results');
      const l = await stripe.customers.list({ email: 'search-me@example.com' });
      eq(l.data.length, 1, 'list results');
    }],
    ['create a card from a token, attach, list, detach', async (stripe, ctx) => {
      const pm = await stripe.paymentMethods.create({ type: 'card', card: { token: 'tok_visa' } });
      eq(pm.card.brand, 'visa', 'brand');
      await stripe.paymentMethods.attach(pm.id, { customer: ctx.customer.id });
      const l = await stripe.customers.listPaymentMethods(ctx.customer.id);
      eq(l.data.length, 1, 'attached methods');
      const l2 = await stripe.paymentMethods.list({ customer: ctx.customer.id, type: 'card' });
      eq(l2.data.length, 1, 'methods of the customer');
      const d = await stripe.paymentMethods.detach(pm.id);
      eq(d.customer, null, 'the customer after detaching');
    }],
    ['unknown parameters are refused', async (stripe, ctx) => {
      await rejects(stripe.customers.update(ctx.customer.id, { emial: 'typo@example.com' }), (e) => {
        eq(e.type, 'StripeInvalidRequestError', 'error type');
        eq(e.code, 'parameter_unknown', 'error code');
        eq(e.param, 'emial', 'error param');
      });
    }],
    ['a missing object is a 404', async (stripe) => {
      await rejects(stripe.subscriptions.retrieve('sub_doesnotexist'), (e) => {
        eq(e.statusCode, 404, 'status');
        eq(e.code, 'resource_missing', 'error code');
      });
    }],
    ['delete the customer', async (stripe, ctx) => {
      const d = await stripe.customers.del(ctx.customer.id);
      eq(d.deleted, true, 'deleted');
      const r = await stripe.customers.retrieve(ctx.customer.id);
      eq(r.deleted, true, 'retrieved as deleted');
    }],
  ]),

  flow('events and clocks', [
    ['list events by type', async (stripe) => {
      const l = await stripe.events.list({ type: 'customer.subscription.*', limit: 100 });
      expect(l.data.length > 0, 'subscription events');
      expect(l.data.every((e) => e.type.startsWith('customer.subscription.')), 'only subscription events');
      const inv = await stripe.events.list({ types: ['invoice.paid', 'invoice.payment_failed'], limit: 100 });
      expect(inv.data.some((e) => e.type === 'invoice.paid'), 'invoice.paid events');
    }],
    ['page through all events and retrieve one', async (stripe) => {
      let n = 0;
      for await (const e of stripe.events.list({ limit: 100 })) {
        n += 1;
        if (n === 1) {
          const again = await stripe.events.retrieve(e.id);
          eq(again.id, e.id, 'the retrieved event');
        }
      }
      expect(n > 50, `many events (got ${n})`);
    }],
    ['list and delete test clocks', async (stripe) => {
      const l = await stripe.testHelpers.testClocks.list({ limit: 100 });
      expect(l.data.length >= 6, 'the clocks of the flows');
      const d = await stripe.testHelpers.testClocks.del(l.data[0].id);
      eq(d.deleted, true, 'deleted');
    }],
    ['webhooks arrived signed', async (stripe, ctx, env) => {
      for (let i = 0; i < 50 && env.hooks.received.length === 0; i++) await new Promise((ok) => setTimeout(ok, 100));
      expect(env.hooks.received.length > 0, 'webhook deliveries');
      eq(env.hooks.badSignatures, 0, 'deliveries with a bad signature');
    }],
  ]),
];
