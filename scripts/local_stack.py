#!/usr/bin/env python3
"""Create the local AWS resources on moto server exactly as template.yaml defines them.

template.yaml is the one source of truth: the table's keys, GSIs and TTL are read
from its SubscriptionsTable resource, never restated here.

    local_stack.py bootstrap --endpoint http://127.0.0.1:5055 --table T --bus B [--bus B2] --mail-from a@b.co \
        [--secret VAR=NAME ...]
    local_stack.py wait --endpoint URL [--timeout 30]

`--secret STRIPE_SECRET_KEY=logiscore/dev/stripe-secret-key` stores the value of the
environment variable STRIPE_SECRET_KEY as the Secrets Manager secret of that name
(created, or updated when it exists), so the functions read it as they do in AWS. The
value is taken from the environment, never the command line (which `ps` shows).
"""
import argparse
import os
import sys
import time
import urllib.request

import boto3
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class _CfnLoader(yaml.SafeLoader):
    """Loads CloudFormation short-form tags (!Ref, !Sub, ...) as plain mappings."""


def _tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node)
    else:
        value = loader.construct_mapping(node)
    return {suffix: value}


_CfnLoader.add_multi_constructor("!", _tag)


def table_properties(template_path=os.path.join(ROOT, "template.yaml")):
    with open(template_path, encoding="utf-8") as f:
        template = yaml.load(f, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    return template["Resources"]["SubscriptionsTable"]["Properties"]


def _client(service, endpoint):
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
    )


def create_table(endpoint, name):
    props = table_properties()
    ddb = _client("dynamodb", endpoint)
    if name in ddb.list_tables()["TableNames"]:
        return
    ddb.create_table(
        TableName=name,
        BillingMode=props["BillingMode"],
        AttributeDefinitions=props["AttributeDefinitions"],
        KeySchema=props["KeySchema"],
        GlobalSecondaryIndexes=props["GlobalSecondaryIndexes"],
    )
    ttl = props["TimeToLiveSpecification"]
    ddb.update_time_to_live(
        TableName=name,
        TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": ttl["Enabled"]},
    )


def put_secret(endpoint, var, name):
    value = os.environ.get(var, "").strip()
    if not value:
        sys.exit(f"--secret {var}={name}: {var} is not set")
    sm = _client("secretsmanager", endpoint)
    try:
        sm.create_secret(Name=name, SecretString=value)
    except sm.exceptions.ResourceExistsException:
        sm.put_secret_value(SecretId=name, SecretString=value)


def bootstrap(args):
    create_table(args.endpoint, args.table)
    ses = _client("sesv2", args.endpoint)
    ses.create_email_identity(EmailIdentity=args.mail_from)
    events = _client("events", args.endpoint)
    for bus in args.bus:
        # Create-or-keep, not list-then-create: ListEventBuses pages, so on a moto server
        # holding many buses a bus that exists may not be on the first page.
        try:
            events.create_event_bus(Name=bus)
        except events.exceptions.ResourceAlreadyExistsException:
            pass
    secrets = []
    for spec in args.secret:
        var, sep, name = spec.partition("=")
        if not sep or not var or not name:
            sys.exit(f"--secret {spec}: expected VAR=NAME")
        put_secret(args.endpoint, var, name)
        secrets.append(name)
    print(f"local stack ready: table={args.table} buses={','.join(args.bus)} ses-identity={args.mail_from} secrets={','.join(secrets)}")


def wait(args):
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(args.endpoint + "/moto-api/", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"{args.endpoint} did not answer within {args.timeout}s")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bootstrap")
    b.add_argument("--endpoint", required=True)
    b.add_argument("--table", required=True)
    b.add_argument("--bus", required=True, action="append")
    b.add_argument("--mail-from", required=True)
    b.add_argument("--secret", action="append", default=[], metavar="VAR=NAME")
    b.set_defaults(func=bootstrap)
    w = sub.add_parser("wait")
    w.add_argument("--endpoint", required=True)
    w.add_argument("--timeout", type=float, default=30)
    w.set_defaults(func=wait)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
