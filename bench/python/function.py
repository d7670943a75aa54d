"""The Python side of the cold-start and memory benchmarks: a Lambda function in the shape
of the stack LogiScore's Rust functions replace. It imports that stack, then serves
invocations from the Lambda Runtime API (AWS_LAMBDA_RUNTIME_API) like a custom runtime.

BENCH_MODE selects the equivalent of each Rust function's benchmark request:
  admin-api       boto3 DynamoDB GetItem of the user's subscription (GET /users/{id}/subscription)
  stripe-webhook  stripe.Webhook.construct_event + a dict dispatch on the event type
  expiry-jobs     boto3 DynamoDB Query of one shard of the pending-outbox index (deliver-pending)
"""
import json
import os
import urllib.request

import stripe  # noqa: F401
import boto3
import fastapi  # noqa: F401
import fastapi_mail  # noqa: F401
import celery  # noqa: F401
import redis  # noqa: F401
import jinja2  # noqa: F401

API = "http://%s/2018-06-01/runtime" % os.environ["AWS_LAMBDA_RUNTIME_API"]
MODE = os.environ.get("BENCH_MODE", "stripe-webhook")
_ddb = None


def ddb():
    global _ddb
    if _ddb is None:
        _ddb = boto3.client("dynamodb", endpoint_url=os.environ.get("AWS_ENDPOINT_URL"), region_name=os.environ.get("AWS_REGION"))
    return _ddb


def on_subscription(event):
    return {"handled": event["type"]}


def on_invoice(event):
    return {"handled": event["type"]}


ROUTES = {
    "customer.subscription.created": on_subscription,
    "customer.subscription.updated": on_subscription,
    "customer.subscription.deleted": on_subscription,
    "invoice.paid": on_invoice,
    "invoice.payment_failed": on_invoice,
}


def handle(event):
    if MODE == "admin-api":
        user = event["rawPath"].split("/")[2]
        item = ddb().get_item(
            TableName=os.environ["TABLE_NAME"],
            Key={"pk": {"S": "USER#" + user}, "sk": {"S": "SUBSCRIPTION"}},
            ConsistentRead=True,
        ).get("Item")
        return {"statusCode": 200 if item else 404, "body": json.dumps({"found": bool(item)})}
    if MODE == "stripe-webhook":
        headers = event.get("headers") or {}
        ev = stripe.Webhook.construct_event(event["body"], headers.get("stripe-signature"), os.environ["STRIPE_WEBHOOK_SECRET"])
        result = ROUTES.get(ev["type"], lambda e: {"ignored": e["type"]})(ev)
        return {"statusCode": 200, "body": json.dumps(result)}
    out = ddb().query(
        TableName=os.environ["TABLE_NAME"],
        IndexName="gsi_pending",
        KeyConditionExpression="pend_pk = :p",
        ExpressionAttributeValues={":p": {"S": "OUTBOX#0"}},
        Limit=100,
    )
    return {"job": "deliver-pending", "counts": {"items_read": out.get("ScannedCount", 0)}}


def main():
    while True:
        with urllib.request.urlopen(API + "/invocation/next", timeout=None) as r:
            request_id = r.headers["Lambda-Runtime-Aws-Request-Id"]
            event = json.loads(r.read())
        try:
            body, kind = json.dumps(handle(event)).encode(), "response"
        except Exception as e:  # report, as a runtime does
            body, kind = json.dumps({"errorType": type(e).__name__, "errorMessage": str(e)}).encode(), "error"
        req = urllib.request.Request("%s/invocation/%s/%s" % (API, request_id, kind), data=body, method="POST")
        urllib.request.urlopen(req).read()


if __name__ == "__main__":
    main()
