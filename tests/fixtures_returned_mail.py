"""Returned mail as mailbox providers send it, made with the stdlib `email` package.

- `dsn(...)`: an RFC 3464 report in the shapes Postfix (text/rfc822-headers), Gmail
  (message/rfc822 with the whole original) and Outlook/Exchange (message/rfc822, a
  top-level message that names no original header) return;
- `arf(...)`: an RFC 5965 complaint, the recipient redacted as Yahoo and Outlook do;
- `qmail_bounce(...)`: a bounce in no standard format (flufl.bounce's job);
- `ses_notification(...)`: SES's event JSON inside an SNS envelope.
"""

from __future__ import annotations

import datetime as dt
import email
import json
import uuid
from email import policy
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, make_msgid
from typing import Any


def _block(fields: dict[str, str]) -> Message:
    block = Message()
    for name, value in fields.items():
        block[name] = value
    return block


def _returned(original: bytes, how: str) -> Message:
    parsed = email.message_from_bytes(original)
    if how == "headers":
        head = original.split(b"\r\n\r\n", 1)[0] if b"\r\n\r\n" in original else \
            original.split(b"\n\n", 1)[0]
        return MIMEText(head.decode("ascii", "replace") + "\n", "rfc822-headers")
    return MIMEMessage(parsed)


def dsn(original: bytes | None, *, recipient: str, status: str, diagnostic: str,
        action: str = "failed", style: str = "postfix", when: dt.datetime,
        reporter: str = "mx.example.net", others: tuple[str, ...] = ()) -> bytes:
    """A delivery status notification about `original` (None: nothing returned)."""
    report = MIMEMultipart("report", report_type="delivery-status")
    report["From"] = f"Mail Delivery System <MAILER-DAEMON@{reporter}>"
    report["To"] = "bounces@acme.example"
    report["Subject"] = {"postfix": "Undelivered Mail Returned to Sender",
                         "gmail": "Delivery Status Notification (Failure)",
                         "outlook": "Undeliverable: your weekly edition"}[style]
    report["Date"] = format_datetime(when)
    report["Message-ID"] = make_msgid(domain=reporter)
    report.attach(MIMEText(f"This is the mail system at host {reporter}.\n\n"
                           f"I'm sorry to have to inform you that your message could not\n"
                           f"be delivered to one or more recipients.\n\n<{recipient}>: "
                           f"{diagnostic}\n"))
    status_part = MIMEBase("message", "delivery-status")
    per_recipient = {"Final-Recipient": f"rfc822; {recipient}", "Action": action,
                     "Status": status, "Diagnostic-Code": f"smtp; {diagnostic}"}
    if style == "outlook":
        per_recipient["Remote-MTA"] = "dns; mail.protection.outlook.example"
    blocks = [_block(per_recipient)] + [
        _block(per_recipient | {"Final-Recipient": f"rfc822; {other}"}) for other in others]
    status_part.set_payload([_block({"Reporting-MTA": f"dns; {reporter}",
                                     "Arrival-Date": format_datetime(when)}), *blocks])
    report.attach(status_part)
    if original is not None:
        report.attach(_returned(original, "headers" if style == "postfix" else "message"))
    return report.as_bytes()


def arf(original: bytes, *, when: dt.datetime, redact_to: bool = True) -> bytes:
    """An abuse report (RFC 5965) with the original's headers, its To redacted."""
    report = MIMEMultipart("report", report_type="feedback-report")
    report["From"] = "feedback-loop@mail.example.net"
    report["To"] = "fbl@acme.example"
    report["Subject"] = "FW: your weekly edition"
    report["Date"] = format_datetime(when)
    report["Message-ID"] = make_msgid(domain="mail.example.net")
    report.attach(MIMEText("This is an email abuse report for an email message received "
                           "from IP 192.0.2.1.\n"))
    fields = MIMEText("Feedback-Type: abuse\nUser-Agent: ExampleFBL/1.0\nVersion: 1\n"
                      f"Arrival-Date: {format_datetime(when)}\n", "plain")
    del fields["Content-Type"]
    fields["Content-Type"] = "message/feedback-report"
    report.attach(fields)
    text = original.decode("utf-8", "replace")
    if redact_to:
        lines = [("To: xxxxxxxx@mail.example.net" if line.startswith("To:") else line)
                 for line in text.splitlines()]
        text = "\n".join(lines)
    head = text.split("\n\n", 1)[0].replace("\r", "")
    report.attach(MIMEText(head + "\n", "rfc822-headers"))
    return report.as_bytes()


def qmail_bounce(recipient: str, *, when: dt.datetime) -> bytes:
    """qmail's plain-text bounce (no RFC 3464 parts)."""
    message = MIMEText(
        "Hi. This is the qmail-send program at mail.example.org.\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
        "This is a permanent error; I've given up. Sorry it didn't work out.\n\n"
        f"<{recipient}>:\nSorry, no mailbox here by that name. (#5.1.1)\n\n"
        "--- Below this line is a copy of the message.\n\nSubject: hello\n")
    message["From"] = "MAILER-DAEMON@mail.example.org"
    message["To"] = "bounces@acme.example"
    message["Subject"] = "failure notice"
    message["Date"] = format_datetime(when)
    message["Message-ID"] = make_msgid(domain="mail.example.org")
    return message.as_bytes()


def headers_of(original: bytes) -> list[dict[str, str]]:
    parsed = email.message_from_bytes(original, policy=policy.compat32)
    return [{"name": k, "value": str(v)} for k, v in parsed.items()]


def ses_notification(kind: str, original: bytes, recipient: str, *, when: dt.datetime,
                     bounce_type: str = "Permanent", status: str = "5.1.1",
                     with_headers: bool = True) -> dict[str, Any]:
    """SES's event (event publishing) for one recipient, wrapped in an SNS envelope."""
    stamp = when.isoformat().replace("+00:00", "Z")
    mail: dict[str, Any] = {"timestamp": stamp, "messageId": f"ses-{uuid.uuid4()}",
                            "source": "news@acme.example", "destination": [recipient],
                            "headersTruncated": False}
    if with_headers:
        mail["headers"] = headers_of(original)
    note: dict[str, Any] = {"eventType": kind, "mail": mail}
    if kind == "Bounce":
        note["bounce"] = {"bounceType": bounce_type, "bounceSubType": "General",
                          "bouncedRecipients": [{"emailAddress": recipient, "status": status,
                                                 "action": "failed",
                                                 "diagnosticCode": f"smtp; 550 {status} no"}],
                          "timestamp": stamp, "feedbackId": f"fb-{uuid.uuid4()}"}
    elif kind == "Complaint":
        note["complaint"] = {"complainedRecipients": [{"emailAddress": recipient}],
                             "timestamp": stamp, "feedbackId": f"fb-{uuid.uuid4()}",
                             "complaintFeedbackType": "abuse"}
    elif kind == "Delivery":
        note["delivery"] = {"timestamp": stamp, "recipients": [recipient],
                            "smtpResponse": "250 2.0.0 OK"}
    else:
        note["deliveryDelay"] = {"timestamp": stamp, "delayType": "MailboxFull",
                                 "delayedRecipients": [{"emailAddress": recipient,
                                                        "status": "4.2.2"}]}
    return {"Type": "Notification", "MessageId": str(uuid.uuid4()),
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:ses-events",
            "Message": json.dumps(note), "Timestamp": stamp, "SignatureVersion": "1"}
