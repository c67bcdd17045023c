"""`sqs://QUEUE`: SES notifications from an SQS queue (SES -> SNS -> SQS, or SES's
event destination straight to SQS). Each message is deleted only after its events are
in the store, so a crash loses nothing (a message seen twice is one event: the store is
idempotent). Credentials come from the environment or the AWS profile, as for the
SES target; `AWS_ENDPOINT_URL_SQS` points it at another endpoint (tests use moto).

`sqs://NAME` names a queue of the default region, `sqs://NAME?region=eu-west-1` another
region. Reading stops when the queue answers empty (or after `limit` messages).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from edition.errors import RunError, UsageError

BATCH = 10          # SQS gives at most 10 messages per receive


def queue_of(source: str) -> tuple[str, str | None]:
    """(queue name, region) of `sqs://NAME[?region=R]`."""
    parts = urlsplit(source)
    if parts.scheme != "sqs" or not parts.netloc or parts.path not in ("", "/"):
        raise UsageError(f"expected sqs://QUEUE-NAME[?region=REGION], not {source!r}")
    options = dict(parse_qsl(parts.query))
    return parts.netloc, options.get("region")


def drain(source: str, handle: Callable[[Any], None], *, limit: int = 100_000) -> int:
    """Call `handle(document)` for each message's JSON body, then delete the message.
    A body that is not JSON is left in the queue (and counted by `handle(None)`)."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    name, region = queue_of(source)
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    done = 0
    try:
        client = boto3.session.Session(region_name=region).client("sqs")
        url = client.get_queue_url(QueueName=name)["QueueUrl"]
        while done < limit:
            got = client.receive_message(QueueUrl=url, MaxNumberOfMessages=BATCH,
                                         WaitTimeSeconds=1).get("Messages", [])
            if not got:
                break
            for message in got:
                try:
                    document = json.loads(message.get("Body") or "")
                except (ValueError, RecursionError):
                    handle(None)
                    continue
                handle(document)
                client.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                done += 1
    except (BotoCoreError, ClientError) as exc:
        raise RunError(f"cannot read the queue {name}: {exc}") from None
    return done


__all__ = ["drain", "queue_of"]
