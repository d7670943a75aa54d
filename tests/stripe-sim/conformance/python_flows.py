"""Ordinary Billing flows through Stripe's Python client (`stripe` 16.0.1, which pins API
2026-09-30.endive) against a running stripe-sim.

    python python_flows.py http://127.0.0.1:PORT results.json

Writes the steps (passed or not) and every JSON body the sim answered to results.json;
run.mjs then checks those bodies against the published types with the Node client's.
Exits non-zero when a step failed.
"""

import json
import sys
import traceback
from datetime import datetime, timezone

import stripe

DAY = 86400
START = int(datetime(2026, 2, 2, 12, tzinfo=timezone.utc).timestamp())


class RecordingClient(stripe.RequestsClient):
    """The client's own HTTP client, keeping a copy of each answer."""

    def __init__(self, bodies):
        super().__init__()
        self.bodies = bodies

    def request(self, method, url, headers, post_data=None):
        content, status, response_headers = super().request(method, url, headers, post_data)
        path = url.split("?", 1)[0].split("//", 1)[-1].split("/", 1)[-1]
        self.bodies.append(
            {
                "where": f"python {method.upper()} /{path}",
                "status": status,
                "text": content.decode("utf-8") if isinstance(content, bytes) else content,
                "version": response_headers.get("stripe-version"),
            }
        )
        return content, status, response_headers


def eq(actual, wanted, what):
    if actual != wanted:
        raise AssertionError(f"expected {what} to be {wanted!r}, got {actual!r}")


class Flows:
    def __init__(self, client):
        self.c = client.v1
        self.ctx = {}

    def clock_customer(self, name, pm):
        clock = self.c.test_helpers.test_clocks.create({"frozen_time": START, "name": name})
        customer = self.c.customers.create({"email": f"py-{name}@example.com", "test_clock": clock.id})
        pm_id = None
        if pm:
            pm_id = self.c.payment_methods.attach(pm, {"customer": customer.id}).id
            self.c.customers.update(customer.id, {"invoice_settings": {"default_payment_method": pm_id}})
        return clock, customer, pm_id

    def advance(self, clock, to):
        advanced = self.c.test_helpers.test_clocks.advance(clock.id, {"frozen_time": to})
        eq(advanced.frozen_time, to, "the clock time")

    def catalogue(self):
        product = self.c.products.create({"name": "Python Premium"})
        self.ctx["premium"] = self.c.prices.create(
            {"product": product.id, "unit_amount": 1500, "currency": "usd", "recurring": {"interval": "month"}, "lookup_key": "py_premium"}
        ).id
        self.ctx["enterprise"] = self.c.prices.create(
            {"product_data": {"name": "Python Enterprise"}, "unit_amount": 6000, "currency": "usd", "recurring": {"interval": "month"}}
        ).id
        listed = self.c.prices.list({"lookup_keys": ["py_premium"], "expand": ["data.product"]})
        eq(listed.data[0].product.id, product.id, "the expanded product")

    def paid(self):
        clock, customer, _ = self.clock_customer("paid", "pm_card_visa")
        sub = self.c.subscriptions.create(
            {"customer": customer.id, "items": [{"price": self.ctx["premium"]}], "expand": ["latest_invoice.payments"]}
        )
        eq(sub.status, "active", "status")
        eq(sub.latest_invoice.amount_paid, 1500, "amount paid")
        intent = sub.latest_invoice.payments.data[0].payment.payment_intent
        eq(self.c.payment_intents.retrieve(intent).status, "succeeded", "the payment intent status")
        self.advance(clock, START + 32 * DAY)
        invoices = self.c.invoices.list({"subscription": sub.id})
        eq([i.billing_reason for i in invoices.data], ["subscription_cycle", "subscription_create"], "the invoices")
        item = self.c.subscriptions.retrieve(sub.id).items.data[0]
        up = self.c.subscriptions.update(
            sub.id,
            {"items": [{"id": item.id, "price": self.ctx["enterprise"]}], "proration_behavior": "always_invoice", "expand": ["latest_invoice"]},
        )
        eq(up.latest_invoice.billing_reason, "subscription_update", "the proration invoice")
        pending = self.c.subscriptions.update(sub.id, {"cancel_at_period_end": True})
        eq(pending.cancel_at, pending.items.data[0].current_period_end, "cancel_at")
        canceled = self.c.subscriptions.cancel(sub.id)
        eq(canceled.status, "canceled", "status after cancel")

    def trial(self):
        clock, customer, _ = self.clock_customer("trial", None)
        sub = self.c.subscriptions.create(
            {
                "customer": customer.id,
                "items": [{"price": self.ctx["premium"]}],
                "trial_period_days": 5,
                "trial_settings": {"end_behavior": {"missing_payment_method": "cancel"}},
            }
        )
        eq(sub.status, "trialing", "status")
        self.advance(clock, START + 6 * DAY)
        eq(self.c.subscriptions.retrieve(sub.id).status, "canceled", "status after the trial")

    def default_incomplete(self):
        _, customer, pm = self.clock_customer("incomplete", "pm_card_authenticationRequired")
        sub = self.c.subscriptions.create(
            {
                "customer": customer.id,
                "items": [{"price": self.ctx["premium"]}],
                "payment_behavior": "default_incomplete",
                "expand": ["latest_invoice.payments", "latest_invoice.confirmation_secret"],
            }
        )
        eq(sub.status, "incomplete", "status")
        eq(sub.latest_invoice.attempt_count, 0, "attempts before confirmation")
        intent = sub.latest_invoice.payments.data[0].payment.payment_intent
        eq(self.c.payment_intents.retrieve(intent).status, "requires_confirmation", "the payment intent status")
        confirmed = self.c.payment_intents.confirm(intent, {"payment_method": pm})
        eq(confirmed.status, "succeeded", "the confirmed payment intent")
        eq(self.c.subscriptions.retrieve(sub.id).status, "active", "status after confirmation")

    def cancel_at(self):
        clock, customer, _ = self.clock_customer("cancel-at", "pm_card_mastercard")
        sub = self.c.subscriptions.create({"customer": customer.id, "items": [{"price": self.ctx["premium"]}], "cancel_at": START + 10 * DAY})
        eq(sub.items.data[0].current_period_end, START + 10 * DAY, "the shortened period")
        self.advance(clock, START + 11 * DAY)
        eq(self.c.subscriptions.retrieve(sub.id).status, "canceled", "status after cancel_at")

    def errors(self):
        try:
            self.c.customers.create({"emial": "typo@example.com"})
        except stripe.InvalidRequestError as e:
            eq((e.code, e.param), ("parameter_unknown", "emial"), "the error")
        else:
            raise AssertionError("an unknown parameter was accepted")
        try:
            self.c.payment_methods.attach("pm_card_chargeDeclined", {"customer": self.c.customers.create({}).id})
        except stripe.CardError as e:
            eq(e.code, "card_declined", "the decline code")
        else:
            raise AssertionError("a declined card attached")

    def events(self):
        seen = 0
        for event in self.c.events.list({"limit": 100}).auto_paging_iter():
            seen += 1
            if seen == 1:
                eq(self.c.events.retrieve(event.id).id, event.id, "the retrieved event")
        if seen < 30:
            raise AssertionError(f"expected many events, got {seen}")
        found = self.c.customers.search({"query": "email:'py-paid@example.com'"})
        eq(len(found.data), 1, "search results")


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    base, out = sys.argv[1], sys.argv[2]
    bodies = []
    client = stripe.StripeClient(
        "sk_test_python_conformance",
        base_addresses={"api": base},
        http_client=RecordingClient(bodies),
        max_network_retries=0,
    )
    flows = Flows(client)
    steps = []
    for name in ["catalogue", "paid", "trial", "default_incomplete", "cancel_at", "errors", "events"]:
        try:
            getattr(flows, name)()
            steps.append({"name": f"python: {name}", "ok": True})
        except Exception as e:  # a failed step is reported, and the run goes on
            steps.append({"name": f"python: {name}", "ok": False, "error": f"{type(e).__name__}: {e}"})
            traceback.print_exc()
    with open(out, "w", encoding="utf-8") as f:
        json.dump({"client": f"stripe-python {stripe.VERSION}", "api_version": stripe.api_version, "steps": steps, "bodies": bodies}, f)
    passed = sum(s["ok"] for s in steps)
    print(f"python client ({stripe.VERSION}, API {stripe.api_version}): {passed} of {len(steps)} flows passed, {len(bodies)} bodies")
    return 0 if passed == len(steps) else 1


if __name__ == "__main__":
    sys.exit(main())
