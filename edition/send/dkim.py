"""DKIM signatures (RFC 6376) for mail the SMTP path sends; SES signs its own (Easy DKIM).

`delivery: {dkim: {domain, selector, key_file | key_env}}` in the campaign names where
the private RSA key is; `DkimSigner.load` reads it once, before anything is sent, and a
missing, unreadable or unusable key is a DkimKeyError (exit 1) that names where it
looked — never the key. The signer then prepends a DKIM-Signature to each message's
exact bytes, with dkimpy.

Which headers are signed (`h=`): what identifies the message and the sender (From, To,
Subject, Date, Message-ID, Reply-To), the MIME headers, and the bulk-mail headers
mailbox providers act on — List-Id, Feedback-ID, List-Unsubscribe and
List-Unsubscribe-Post. The last one is not in dkimpy's default list, yet RFC 8058
requires it signed: a one-click unsubscribe is only honoured when both List-Unsubscribe
headers are covered. The headers whose meaning a replay could change are "oversigned"
(named once more than they occur), so nobody can add a second one after signing.
Canonicalization is relaxed/relaxed, which survives the re-folding relays do.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from edition.content.delivery_settings import Dkim as DkimConfig
from edition.content.plugins import target_plugin
from edition.errors import RunError

SIGNED_HEADERS = (
    "from", "reply-to", "sender", "to", "cc", "subject", "date", "message-id",
    "mime-version", "content-type", "content-transfer-encoding",
    "list-id", "list-unsubscribe", "list-unsubscribe-post", "feedback-id",
    "in-reply-to", "references",
)
# named once more than they occur: a header added after signing breaks the signature
OVERSIGNED = frozenset({"from", "reply-to", "sender", "to", "cc", "subject", "date",
                        "message-id", "list-id", "list-unsubscribe",
                        "list-unsubscribe-post", "feedback-id"})
MIN_KEY_BITS = 1024
_HEADER_NAME = re.compile(rb"^([!-9;-~]+)[ \t]*:", re.MULTILINE)


class DkimKeyError(RunError):
    """The DKIM key cannot be used; nothing is sent. The message never holds the key."""


class DkimSigningError(RunError):
    """dkimpy refused to sign a message (it has no From header, say)."""


def applies_to(target: str) -> bool:
    """Sign for the targets that ask for it (SMTP); SES adds its own (Easy DKIM)."""
    plugin = target_plugin(target)
    return plugin is not None and plugin.dkim


def _read_key(config: DkimConfig, root: Path | None,
              environ: Mapping[str, str] | None) -> tuple[bytes, str]:
    """(the PEM bytes, where they came from: a path or an environment variable's name)."""
    if config.key_env:
        where = f"environment variable {config.key_env}"
        value = (os.environ if environ is None else environ).get(config.key_env, "")
        if not value.strip():
            raise DkimKeyError(f"DKIM key not found: {where} is not set")
        # a key in a single-line variable may have its line breaks written as \n
        return value.replace("\\n", "\n").encode("utf-8"), where
    path = Path(str(config.key_file)).expanduser()
    if not path.is_absolute() and root is not None:
        path = root / path
    where = f"key file {path}"
    try:
        return path.read_bytes(), where
    except FileNotFoundError:
        raise DkimKeyError(f"DKIM key not found: {where} does not exist") from None
    except OSError as exc:
        raise DkimKeyError(f"DKIM key unreadable: {where}: {exc.strerror}") from None


def _pkcs1(pem: bytes, where: str) -> bytes:
    """The key as PKCS#1 PEM ("BEGIN RSA PRIVATE KEY"), the form dkimpy reads.

    `openssl genpkey` writes PKCS#8 ("BEGIN PRIVATE KEY"); that is converted with the
    cryptography package when it is installed.
    """
    pem = pem.replace(b"\r\n", b"\n").strip() + b"\n"
    if b"ENCRYPTED" in pem:
        raise DkimKeyError(f"DKIM key in {where} is encrypted; give an unencrypted PEM key "
                           f"(keep it readable only by the sending account)")
    if b"-----BEGIN RSA PRIVATE KEY-----" in pem:
        return pem
    if b"-----BEGIN PRIVATE KEY-----" not in pem:
        raise DkimKeyError(f"DKIM key in {where} is not a PEM private key (expected "
                           f"-----BEGIN RSA PRIVATE KEY----- or -----BEGIN PRIVATE KEY-----)")
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
    except ImportError:
        raise DkimKeyError(f"DKIM key in {where} is PKCS#8; convert it with "
                           f"`openssl rsa -in KEY -traditional` or install cryptography"
                           ) from None
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise DkimKeyError(f"DKIM key in {where} cannot be read as a private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise DkimKeyError(f"DKIM key in {where} is not an RSA key (only rsa-sha256 is "
                           f"supported)")
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def _check(pem: bytes, where: str) -> None:
    import dkim.crypto

    try:
        parsed = dkim.crypto.parse_pem_private_key(pem)
    except Exception:  # dkimpy raises several kinds; none may echo the key
        raise DkimKeyError(f"DKIM key in {where} is not a usable RSA private key") from None
    bits = int(parsed["modulus"]).bit_length()
    if bits < MIN_KEY_BITS:
        raise DkimKeyError(f"DKIM key in {where} has {bits} bits; receivers ignore "
                           f"signatures under {MIN_KEY_BITS} (use 2048)")


def signed_header_names(message: bytes) -> list[str]:
    """`h=` for this message: each signed header as often as it occurs, oversigned ones
    once more (absent ones once, which signs their absence)."""
    head = message.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    counts: dict[str, int] = {}
    for match in _HEADER_NAME.finditer(head):
        name = match.group(1).decode("ascii").lower()
        counts[name] = counts.get(name, 0) + 1
    names: list[str] = []
    for name in SIGNED_HEADERS:
        times = counts.get(name, 0) + (1 if name in OVERSIGNED else 0)
        names += [name] * times
    return names


@dataclass(frozen=True)
class DkimSigner:
    """Signs messages for one domain and selector; the key stays out of repr and pickles
    (a copy unpickled elsewhere reads the key again from where the config says)."""

    config: DkimConfig
    root: Path | None = None
    _key: bytes = field(default=b"", repr=False, compare=False)

    @classmethod
    def load(cls, config: DkimConfig, *, root: Path | None = None,
             environ: Mapping[str, str] | None = None) -> DkimSigner:
        """Read and check the key now (call it before the first message is sent)."""
        pem, where = _read_key(config, root, environ)
        pem = _pkcs1(pem, where)
        _check(pem, where)
        return cls(config, root, pem)

    def sign(self, message: bytes) -> bytes:
        """The message with a DKIM-Signature header in front (CRLF, relaxed/relaxed)."""
        import dkim

        try:
            signature: bytes = dkim.sign(   # dkimpy has no types
                message, self.config.selector.encode("ascii"),
                self.config.domain.encode("ascii"), self._key,
                canonicalize=(b"relaxed", b"relaxed"),
                include_headers=[n.encode("ascii") for n in signed_header_names(message)],
                linesep=b"\r\n")
        except dkim.DKIMException as exc:
            raise DkimSigningError(f"DKIM signing failed for d={self.config.domain} "
                                   f"s={self.config.selector}: {exc}") from None
        return signature + message

    def __reduce__(self) -> tuple[object, ...]:
        return (_reload, (self.config, self.root))


def _reload(config: DkimConfig, root: Path | None) -> DkimSigner:
    return DkimSigner.load(config, root=root)


_SIGNERS: dict[tuple[DkimConfig, str | None], DkimSigner] = {}


def sign(message: bytes, config: DkimConfig, *, root: Path | None = None) -> bytes:
    """Sign one message with the key `config` names (read once per process, then kept)."""
    key = (config, str(root) if root is not None else None)
    signer = _SIGNERS.get(key)
    if signer is None:
        signer = _SIGNERS[key] = DkimSigner.load(config, root=root)
    return signer.sign(message)


__all__ = ["OVERSIGNED", "SIGNED_HEADERS", "DkimKeyError", "DkimSigner", "DkimSigningError",
           "applies_to", "sign", "signed_header_names"]
