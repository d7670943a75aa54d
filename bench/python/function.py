"""The Python side of the cold-start and memory benchmarks: a Lambda function in the shape
of the stack LogiScore's Rust functions replace. It imports that stack, then serves
invocations from the Lambda Runtime API (AWS_LAMBDA_RUNTIME_API) like a custom runtime.

BENCH_MODE picks the Rust function it stands for; each mode makes that function's AWS and
Stripe round trips, in the same order, on the same single-table items (boto3, stripe-python):
  admin-api       GET /users/{id}/subscription: one consistent GetItem of USER#<id>/SUBSCRIPTION.
  stripe-webhook  a signed invoice.paid: verify the signature; one consistent BatchGetItem of
                  the ledger item and the subscription's and customer's mapping items (a
                  ledger hit answers "duplicate" here); one Stripe GET of the invoice with its
                  subscription expanded; one consistent GetItem of the owner's subscription;
                  one TransactWriteItems: the ledger item, the record (version + 1, the
                  invoice's status and payment) and both mappings, each conditional as in Rust.
  expiry-jobs     {"job": "deliver-pending"}: SES v2 GetAccount (the send rate; moto has none,
                  so SES_SEND_RATE); a Query of each shard of gsi_pending; for each due e-mail:
                  a conditional PutItem claiming it (attempts + 1, a lease), a GetItem of the
                  profile, a jinja2 render, an UpdateItem taking a shared send slot, SES v2
                  SendEmail, and a conditional PutItem recording it sent (out of gsi_pending).
Clients are built on first use, as the Python stack did; the Rust functions open their
connections during init instead. Other event types and outbox payloads are not mirrored.
"""
import base64
import datetime as dt
import html
import json
import os
import time
import urllib.request

import stripe
import boto3
import fastapi  # noqa: F401
import fastapi_mail  # noqa: F401
import celery  # noqa: F401
import redis  # noqa: F401
import jinja2
from botocore.config import Config
from boto3.dynamodb.types import TypeDeserializer

API = "http://%s/2018-06-01/runtime" % os.environ["AWS_LAMBDA_RUNTIME_API"]
MODE = os.environ.get("BENCH_MODE", "stripe-webhook")
TABLE = os.environ.get("TABLE_NAME", "")
PENDING_SHARDS = 4  # shared/src/store/keys.rs
LEASE = dt.timedelta(minutes=2)  # DeliveryPolicy::default()
LIVE = {"active", "trial", "past_due"}

stripe.api_key = os.environ.get("STRIPE_SECRET_KEY")
stripe.api_base = os.environ.get("STRIPE_API_BASE", stripe.api_base)
stripe.max_network_retries = 2
if os.environ.get("SSL_CERT_FILE"):
    stripe.ca_bundle_path = os.environ["SSL_CERT_FILE"]

_clients = {}


def aws(service):
    if service not in _clients:
        _clients[service] = boto3.client(
            service,
            endpoint_url=os.environ.get("AWS_ENDPOINT_URL"),
            region_name=os.environ.get("AWS_REGION"),
            config=Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "total_max_attempts": 3}),
        )
    return _clients[service]


def S(value):
    return {"S": value}


def N(value):
    return {"N": str(value)}


def stamp(at):
    """keys::timestamp: RFC 3339, milliseconds, Z."""
    return at.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (at.microsecond // 1000)


def now():
    return dt.datetime.now(dt.timezone.utc)


def key(pk, sk):
    return {"pk": S(pk), "sk": S(sk)}


def put(item, condition=None, values=None):
    p = {"TableName": TABLE, "Item": item}
    if condition:
        p["ConditionExpression"] = condition
    if values:
        p["ExpressionAttributeValues"] = values
    return {"Put": p}


# --- admin-api -------------------------------------------------------------------------

def admin_api(event):
    user = event["rawPath"].split("/")[2]
    item = aws("dynamodb").get_item(TableName=TABLE, Key=key("USER#" + user, "SUBSCRIPTION"), ConsistentRead=True).get("Item")
    if not item:
        return {"statusCode": 404, "body": json.dumps({"title": "no subscription", "user_id": user})}
    plain = {k: TypeDeserializer().deserialize(v) for k, v in item.items() if k not in ("pk", "sk", "entity", "exp_pk", "exp_sk")}
    return {"statusCode": 200, "body": json.dumps(plain, default=int)}


# --- stripe-webhook --------------------------------------------------------------------

def id_of(value):
    return value.get("id") if isinstance(value, dict) else value


def stripe_webhook(event):
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        body = base64.b64decode(body)
    try:
        ev = stripe.Webhook.construct_event(body, headers.get("stripe-signature"), os.environ["STRIPE_WEBHOOK_SECRET"]).to_dict()
    except (ValueError, stripe.SignatureVerificationError) as e:
        return {"statusCode": 400, "body": json.dumps({"title": "bad signature", "detail": str(e)})}
    obj = ev["data"]["object"]
    invoice = ev["type"].startswith("invoice.")
    sub_id = id_of(((obj.get("parent") or {}).get("subscription_details") or {}).get("subscription") or obj.get("subscription")) if invoice else None
    customer = id_of(obj.get("customer"))
    mappings = [pk for pk in ("STRIPE_SUBSCRIPTION#%s" % sub_id if sub_id else None,
                              "STRIPE_CUSTOMER#%s" % customer if customer else None) if pk]

    # 1. The ledger and the owner's mappings, one strongly consistent read.
    found = {}
    wanted = {TABLE: {"Keys": [key("STRIPE_EVENT#" + ev["id"], "LEDGER")] + [key(pk, "MAP") for pk in mappings], "ConsistentRead": True}}
    for _ in range(4):
        out = aws("dynamodb").batch_get_item(RequestItems=wanted)
        for item in out.get("Responses", {}).get(TABLE, []):
            found[item["pk"]["S"]] = item
        wanted = out.get("UnprocessedKeys") or {}
        if not wanted:
            break
    if "STRIPE_EVENT#" + ev["id"] in found:
        return answer(ev, "duplicate")
    owner = next((found[pk]["user_id"]["S"] for pk in mappings if pk in found), None)
    if not sub_id:
        return commit(ev, [], "ignored")

    # 2. The invoice, its subscription (with that one's latest invoice) expanded.
    inv = stripe.Invoice.retrieve(obj["id"], expand=["parent.subscription_details.subscription.latest_invoice"]).to_dict()
    sub = inv["parent"]["subscription_details"]["subscription"]
    owner = owner or (sub.get("metadata") or {}).get("user_id")
    if not owner:
        return commit(ev, [], "ignored")

    # 3. The owner's record, brought in line with Stripe's state.
    record = aws("dynamodb").get_item(TableName=TABLE, Key=key("USER#" + owner, "SUBSCRIPTION"), ConsistentRead=True).get("Item")
    if not record or record.get("stripe_subscription_id", {}).get("S") not in (None, sub["id"]):
        return commit(ev, [], "ignored")
    expected = record["version"]["N"]
    status = {"trialing": "trial"}.get(sub["status"], sub["status"])
    record.update(status=S(status), version=N(int(expected) + 1), updated_at=S(stamp(now())),
                  stripe_subscription_id=S(sub["id"]), stripe_customer_id=S(id_of(sub["customer"])))
    paid_at = (inv.get("status_transitions") or {}).get("paid_at")
    if paid_at:
        record["last_billing_date"] = S(stamp(dt.datetime.fromtimestamp(paid_at, dt.timezone.utc)))
    if status not in LIVE:  # only live records are in the sparse expiry index
        record.pop("exp_pk", None)
        record.pop("exp_sk", None)
    writes = [put(record, "version = :expected", {":expected": N(expected)})]
    for pk in ("STRIPE_SUBSCRIPTION#" + sub["id"], "STRIPE_CUSTOMER#" + id_of(sub["customer"])):
        item = {**key(pk, "MAP"), "entity": S("stripe_mapping"), "user_id": S(owner)}
        writes.append(put(item, "attribute_not_exists(pk) OR user_id = :user", {":user": S(owner)}))
    return commit(ev, writes, "applied")


def commit(ev, writes, outcome):
    """4. One transaction: the ledger item first (once only), then the event's effects."""
    received = now()
    ledger = {**key("STRIPE_EVENT#" + ev["id"], "LEDGER"), "entity": S("stripe_event"), "event_type": S(ev["type"]),
              "received_at": S(stamp(received)), "expires_at": N(int(received.timestamp()) + 30 * 86400)}
    try:
        aws("dynamodb").transact_write_items(TransactItems=[put(ledger, "attribute_not_exists(pk)")] + writes)
    except aws("dynamodb").exceptions.TransactionCanceledException as e:
        if e.response.get("CancellationReasons", [{}])[0].get("Code") == "ConditionalCheckFailed":
            return answer(ev, "duplicate")
        raise
    return answer(ev, outcome)


def answer(ev, outcome):
    return {"statusCode": 200, "body": json.dumps({"received": True, "event_id": ev["id"], "outcome": outcome})}


# --- expiry-jobs: deliver-pending ------------------------------------------------------

MAIL = jinja2.Environment(autoescape=False).from_string(  # the text part; the HTML part escapes it
    "Hello {{ name }},\n\nyour LogiScore {{ kind | replace('_', ' ') }}"
    "{% if context.plan %} for the {{ context.plan }} plan{% endif %}"
    "{% if context.amount %}: {{ context.amount.amount // 100 }}.{{ '%02d' % (context.amount.amount % 100) }} {{ context.amount.currency | upper }}{% endif %}.\n"
)


def outbox_put(item, seen_attempts):
    """DynamoStore::update_outbox: the whole item, if still pending with the attempts seen."""
    try:
        aws("dynamodb").put_item(
            TableName=TABLE, Item=item, ConditionExpression="#state = :pending AND attempts = :attempts",
            ExpressionAttributeNames={"#state": "state"},
            ExpressionAttributeValues={":pending": S("pending"), ":attempts": N(seen_attempts)})
        return True
    except aws("dynamodb").exceptions.ConditionalCheckFailedException:
        return False


def send_slot(rate):
    """The shared per-second send slot (delivery::pacing), waiting at most 10 s for one."""
    give_up = time.time() + 10
    while True:
        second = int(time.time())
        try:
            aws("dynamodb").update_item(
                TableName=TABLE, Key=key("SEND_SLOT#%d" % second, "SLOT"), UpdateExpression="ADD used :one SET expires_at = :ttl",
                ConditionExpression="attribute_not_exists(used) OR used < :rate", ReturnValues="ALL_NEW",
                ExpressionAttributeValues={":one": N(1), ":rate": N(rate), ":ttl": N(second + 86400)})
            return True
        except aws("dynamodb").exceptions.ConditionalCheckFailedException:
            if second + 1 > give_up:
                return False
            time.sleep(max(0, second + 1 - time.time()))


def deliver(item, rate):
    """OutboxDelivery::deliver_one for an e-mail: claim, send, record. True when sent."""
    attempts = int(item["attempts"]["N"])
    payload = json.loads(item["payload"]["S"])
    if item["state"]["S"] != "pending" or payload.get("type") != "email":
        return False
    due = now() + LEASE
    claimed = dict(item, attempts=N(attempts + 1), next_attempt_at=S(stamp(due)), pend_sk=S("%s#%s" % (stamp(due), item["id"]["S"])))
    if not outbox_put(claimed, attempts):
        return False
    user = payload["user_id"]
    profile = aws("dynamodb").get_item(TableName=TABLE, Key=key("USER#" + user, "PROFILE"), ConsistentRead=True).get("Item")
    done = dict(claimed)
    try:
        if not profile or "email" not in profile:
            raise LookupError("user %s has no profile" % user)
        name = (profile.get("full_name") or profile.get("username") or {}).get("S") or "there"
        text = MAIL.render(name=name, kind=payload["kind"], context=payload.get("context") or {})
        if not send_slot(rate):
            raise TimeoutError("no SES send slot within 10 s")
        tag = "".join(c if c.isalnum() or c in "-_" else "_" for c in item["id"]["S"])[:256]
        sent = aws("sesv2").send_email(
            FromEmailAddress=os.environ["MAIL_FROM"],
            Destination={"ToAddresses": [profile["email"]["S"]]},
            Content={"Simple": {"Subject": {"Data": "LogiScore: " + payload["kind"].replace("_", " "), "Charset": "UTF-8"},
                                "Body": {"Text": {"Data": text, "Charset": "UTF-8"},
                                         "Html": {"Data": "<pre>%s</pre>" % html.escape(text), "Charset": "UTF-8"}}}},
            EmailTags=[{"Name": "notification", "Value": payload["kind"]}, {"Name": "notification_id", "Value": tag},
                       {"Name": "user", "Value": user.encode().hex()}])
    except Exception as e:  # recorded on the item and retried with the backoff, as in Rust
        retry_at = now() + min(dt.timedelta(minutes=2 ** attempts), dt.timedelta(hours=6))
        done.update(last_error=S(str(e)[:500]), next_attempt_at=S(stamp(retry_at)), pend_sk=S("%s#%s" % (stamp(retry_at), item["id"]["S"])))
        outbox_put(done, attempts + 1)
        return False
    sent_at = now()
    for name in ("pend_pk", "pend_sk", "last_error"):  # out of the sparse pending index
        done.pop(name, None)
    done.update(state=S("sent"), delivery_id=S(sent["MessageId"]), sent_at=S(stamp(sent_at)),
                expires_at=N(int(sent_at.timestamp()) + 30 * 86400))
    outbox_put(done, attempts + 1)
    return True


def expiry_jobs(event):
    if event.get("job") != "deliver-pending":
        raise ValueError("only deliver-pending is mirrored, not %r" % event.get("job"))
    try:
        rate = int(aws("sesv2").get_account()["SendQuota"]["MaxSendRate"])
    except Exception:  # moto has no GetAccount
        rate = int(os.environ.get("SES_SEND_RATE", "10"))
    rate = max(rate, 1)
    limit, due, items, read = min(max(rate * 5, 1), 1000), "%s#~" % stamp(now()), [], 0
    for shard in range(PENDING_SHARDS):
        if len(items) >= limit:
            break
        out = aws("dynamodb").query(
            TableName=TABLE, IndexName="gsi_pending", KeyConditionExpression="pend_pk = :pk AND pend_sk <= :now",
            ExpressionAttributeValues={":pk": S("OUTBOX#%d" % shard), ":now": S(due)}, Limit=limit - len(items))
        read += out.get("ScannedCount", 0)
        items += out.get("Items", [])
    sent = sum(deliver(item, rate) for item in items)
    return {"job": "deliver-pending", "counts": {"items_read": read, "sent": sent}}


HANDLERS = {"admin-api": admin_api, "stripe-webhook": stripe_webhook, "expiry-jobs": expiry_jobs}


def handle(event):
    return HANDLERS[MODE](event)


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
