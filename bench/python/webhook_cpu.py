"""Per-event CPU of the Python webhook path: stripe.Webhook.construct_event (signature
check + JSON parse into a StripeObject) and a dict dispatch on the event type.
Usage: webhook_cpu.py EVENT_FILE SECRET ITERATIONS  -> prints {"per_event_ns": ...}"""
import hashlib
import hmac
import json
import sys
import time

import stripe

path, secret, iterations = sys.argv[1], sys.argv[2], int(sys.argv[3])
payload = open(path, "rb").read().decode("utf-8")
t = int(time.time())
sig = hmac.new(secret.encode(), ("%d.%s" % (t, payload)).encode(), hashlib.sha256).hexdigest()
header = "t=%d,v1=%s" % (t, sig)

hits = {}


def handler(event):
    hits[event["type"]] = hits.get(event["type"], 0) + 1


ROUTES = {
    "customer.subscription.created": handler,
    "customer.subscription.updated": handler,
    "customer.subscription.deleted": handler,
    "invoice.paid": handler,
    "invoice.payment_failed": handler,
    "checkout.session.completed": handler,
}


def once():
    event = stripe.Webhook.construct_event(payload, header, secret)
    ROUTES.get(event["type"], lambda e: None)(event)


for _ in range(max(1, iterations // 10)):
    once()
start = time.perf_counter()
for _ in range(iterations):
    once()
elapsed = time.perf_counter() - start
assert hits.get("customer.subscription.updated"), hits
print(json.dumps({"per_event_ns": elapsed / iterations * 1e9, "iterations": iterations, "stripe": stripe.VERSION}))
