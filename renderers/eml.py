"""RFC 5322 messages: multipart/alternative (text + HTML), built with the stdlib `email`.

The stdlib writes every header (encoded words, address quoting, folding) and the MIME
skeleton (boundaries, part headers). Its generator then copies bodies line by line,
which costs 1.3-4.5 ms per 20 kB message here — longer than everything else an edition
needs together. So the skeleton is generated once, and each customer's bodies are
base64-encoded in C and dropped into it.

Customer values reach headers only after every line break is folded into a space, and
only through the email package's header objects: no value can add or split a header. A
display name, however long or foreign, is written as encoded words with the address
outside them, so every reader finds exactly one address.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import itertools
import re
from email import policy
from email.charset import BASE64, Charset
from email.header import Header
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.utils import format_datetime, formataddr
from functools import lru_cache

_BREAKS = re.compile(r"[\r\n\x00\x0b\x0c\x1c-\x1e\u2028\u2029\x85]+")  # all str.splitlines() breaks
_POLICY = policy.compat32.clone(linesep="\r\n", max_line_length=78)
# Encoded words in base64: the stdlib's default for utf-8 ("shortest") measures the
# quoted-printable length character by character, 10x slower than just using base64.
_UTF8_B = Charset("utf-8")
_UTF8_B.header_encoding = BASE64
_TEXT, _HTML = "@@EDITION-TEXT-BODY@@", "@@EDITION-HTML-BODY@@"
_BEFORE_SPACE = re.compile(r"(?=[ \t])")


def one_line(value: str) -> str:
    """Header-safe text: every kind of line break becomes a single space."""
    return _BREAKS.sub(" ", value).strip()


def message_id(content_hash: str, campaign: str, domain: str) -> str:
    """Stable per content: a rerun of the same edition gets the same Message-ID."""
    return f"<{content_hash[:32]}.{campaign}@{domain}>"


def _header(name: str, value: str) -> bytes:
    """One header line; the stdlib encodes and folds whatever is not short plain ASCII."""
    text = one_line(value)
    # a Subject that looks like an encoded word ("=?utf-8?q?...?=") is encoded too, or a
    # reader would decode it into something other than the value
    plain = text.isascii() and not (name == "Subject" and "=?" in text)
    if plain and len(name) + len(text) < 76:
        return f"{name}: {text}\r\n".encode("ascii")
    if plain:
        folded = _fold(name, text)
        if folded is not None:
            return folded.encode("ascii")
    encoded = Header(text, _UTF8_B, maxlinelen=78, header_name=name).encode(linesep="\r\n")
    return f"{name}: {encoded}\r\n".encode("ascii")


def address_header(field: str, name: str, address: str) -> bytes:
    """`To: Name <addr>`: the name quoted or encoded (and folded) as it must be, never the
    address, so every reader finds exactly one address.

    An address that is not ASCII (it needs SMTPUTF8) is written as UTF-8 (RFC 6532).
    """
    name, address = one_line(name), one_line(address)
    if not name:
        return f"{field}: {address}\r\n".encode()
    if (name.isascii() and address.isascii() and "=?" not in name
            and len(field) + len(name) + len(address) < 70):
        return f"{field}: {formataddr((name, address))}\r\n".encode()
    pieces = [*_phrase(name), f"<{address}>"]
    lines, line = [], f"{field}:"
    for piece in pieces:
        if len(line) + 1 + len(piece) > 78 and line != f"{field}:":
            lines.append(line)
            line = " " + piece
        else:
            line += " " + piece
    lines.append(line)
    return ("\r\n".join(lines) + "\r\n").encode()


def _phrase(name: str) -> list[str]:
    """A display name as header words: ASCII runs quoted, the rest as encoded words.

    Runs are cut at spaces, so the header can be folded there and every reader puts the
    same spaces back; a space between two encoded words stays inside one of them (RFC
    2047 readers drop whitespace between encoded words).
    """
    pieces: list[str] = []
    for is_ascii, tokens in itertools.groupby(name.split(" "), key=str.isascii):
        text = " ".join(tokens)
        if is_ascii and "=?" not in text and len(text) < 900:
            words = text.replace("\\", "\\\\").replace('"', '\\"').split(" ")
            words[0] = '"' + words[0]
            words[-1] = words[-1] + '"'
            pieces.extend(words)  # a quoted string may be folded at its spaces
        else:
            encoded = Header(text, _UTF8_B, maxlinelen=76).encode(linesep="\r\n")
            pieces.extend(encoded.split("\r\n "))
    return pieces


def _fold(name: str, text: str) -> str | None:
    """Plain ASCII folded before whitespace (RFC 5322 2.2.3), never right after the name.

    (The stdlib's Header moves a word longer than the first line to the next line, and a
    reader then sees a leading space in the value.) None if a line would pass 998.
    """
    lines, line = [], f"{name}:"
    for piece in _BEFORE_SPACE.split(" " + text):
        if len(line) + len(piece) > 78 and line != f"{name}:":
            lines.append(line)
            line = piece
        else:
            line += piece
    lines.append(line)
    if any(len(x) > 998 for x in lines):
        return None
    return "\r\n".join(lines) + "\r\n"


@lru_cache(maxsize=8)
def _skeleton(with_html: bool) -> tuple[bytes, bytes, bytes]:
    """MIME structure from the stdlib, split where the two bodies go."""
    digest = hashlib.sha256(f"edition-{with_html}".encode()).hexdigest()[:24]
    boundary = f"=_edition_{digest}"  # '_' never occurs in base64, so no body can hold it
    text = MIMENonMultipart("text", "plain", charset="utf-8")
    text["Content-Transfer-Encoding"] = "base64"
    text.set_payload(_TEXT)
    if not with_html:
        del text["MIME-Version"]
        flat = text.as_bytes(policy=_POLICY)
        head, _, tail = flat.partition(_TEXT.encode())
        return head, tail, b""
    html = MIMENonMultipart("text", "html", charset="utf-8")
    html["Content-Transfer-Encoding"] = "base64"
    html.set_payload(_HTML)
    for part in (text, html):
        del part["MIME-Version"]
    outer = MIMEMultipart("alternative", boundary=boundary, _subparts=[text, html])
    del outer["MIME-Version"]
    flat = outer.as_bytes(policy=_POLICY)
    head, _, rest = flat.partition(_TEXT.encode())
    middle, _, tail = rest.partition(_HTML.encode())
    return head, middle, tail


def _body(text: str | bytes) -> bytes:
    # the caller may have the UTF-8 already (it writes the same text to .html and .txt):
    # encoding a 20 kB non-ASCII document costs more than the base64 of it
    encoded = base64.b64encode(text if isinstance(text, bytes) else text.encode("utf-8"))
    # 76-character lines as RFC 2045 asks; slicing is 2.5x faster than base64.encodebytes
    lines = [encoded[i:i + 76] for i in range(0, len(encoded), 76)]
    lines.append(b"")
    return b"\r\n".join(lines)


def with_attachment(message: bytes, data: bytes, filename: str, *,
                    maintype: str = "application", subtype: str = "pdf") -> bytes:
    """`message` with a file attached: multipart/mixed around its body, by the stdlib
    (only the customers who asked for an attachment pay for the generator)."""
    from email import message_from_bytes
    from email.message import EmailMessage

    msg = message_from_bytes(message, _class=EmailMessage, policy=policy.SMTP)
    msg.make_mixed()
    msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    # from the content, not the stdlib's random one: a replay is byte for byte, and the
    # same edition is the same message ('_' never occurs in base64, so no part holds it)
    digest = hashlib.sha256(b"%s\0%s\0%s" % (message, data, filename.encode())).hexdigest()
    msg.set_boundary(f"=_edition_mixed_{digest[:24]}")
    return msg.as_bytes(policy=policy.SMTP)


class MessageWriter:
    """Writes one run's messages: the headers shared by all are made once."""

    def __init__(self, *, sender: tuple[str, str], date: dt.datetime,
                 reply_to: tuple[str, str] | None = None):
        lines = [address_header("From", *sender)]
        if reply_to:
            lines.append(address_header("Reply-To", *reply_to))
        lines.append(_header("Date", format_datetime(date)))
        self.common = b"".join(lines)

    def build(self, *, subject: str, recipient: str, recipient_name: str | None,
              text: str | bytes, html: str | bytes | None, msg_id: str,
              extra_headers: dict[str, str] | None = None) -> bytes:
        """The complete message as bytes with CRLF line endings."""
        # the address was checked when the row was read; only the name needs encoding
        lines = [_header("Subject", subject), self.common,
                 address_header("To", recipient_name or "", recipient),
                 _header("Message-ID", msg_id)]
        for key, value in (extra_headers or {}).items():
            lines.append(_header(key, value))
        lines.append(b"MIME-Version: 1.0\r\n")
        start, middle, end = _skeleton(html is not None)
        lines += [start, _body(text), middle]
        if html is not None:
            lines += [_body(html), end]
        return b"".join(lines)
