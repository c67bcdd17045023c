"""Unsubscribe links: signed tokens, the URLs that carry them, and the List-Unsubscribe header.

A link must name who unsubscribes without showing it: a bare customer id in a URL can
be edited to unsubscribe someone else, and it leaks the id to every proxy log. So the
token is the customer's (campaign, customer id, address hash) sealed with the secret in
`EDITION_UNSUBSCRIBE_SECRET`, using HMAC-SHA256 only (version 2 adds the customer's
locale, so the page answers in their language; version 1 tokens still verify):

- the tag is HMAC(mac key, version + payload), cut to 16 bytes; it authenticates the
  payload and doubles as the nonce of the encryption (a "synthetic IV", as in SIV mode);
- the payload is encrypted with a keystream of HMAC(enc key, tag + counter) blocks.

The token is therefore deterministic (the same customer gets the same link in every
rerun, so the rendered bytes and content hashes stay stable), unreadable without the
secret, and any change to it fails verification (checked in constant time). Links do
not expire: a mailbox keeps them for years and they must keep working.

`EDITION_UNSUBSCRIBE_SECRET` may hold several secrets separated by commas or spaces:
the first signs, every one verifies, so a secret can be rotated without breaking the
links already sent.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from edition.addresses import ADDRESS_HASH_HEX, address_hash, match_address
from edition.errors import ContentError, EditionError, RunError

if TYPE_CHECKING:
    from edition.content.campaign import Campaign

SECRET_ENV = "EDITION_UNSUBSCRIBE_SECRET"
TOKEN_PARAM = "token"      # ?token=... on the campaign's unsubscribe_url
MIN_SECRET_LENGTH = 16     # characters; shorter secrets can be guessed offline
ONE_CLICK = "List-Unsubscribe=One-Click"   # RFC 8058: the POST body and the header value

_VERSION = b"\x01"         # campaign, customer id, address hash
_VERSION_LOCALE = b"\x02"  # the same, plus the customer's locale (the page's language)
_TAG_BYTES = 16
_HASH_BYTES = ADDRESS_HASH_HEX // 2
_MAX_TOKEN_CHARS = 4096    # a longer "token" is refused before any decoding
_TOKEN_CHARS = re.compile(r"^[A-Za-z0-9_-]+\Z")
_SPLIT = re.compile(r"[\s,]+")
# a language tag (en, es-MX, pt_BR): anything else is left out of the token
_LOCALE = re.compile(r"^[A-Za-z]{2,8}([-_][A-Za-z0-9]{1,8}){0,4}\Z")
_MAX_LOCALE = 35
_UNSIGNED = "unsigned-preview"
NO_URL = ("marketing e-mail needs unsubscribe_url in the campaign (or kind: transactional): "
          "without it the messages carry no List-Unsubscribe header and an empty "
          "unsubscribe link")


class UnsubscribeSecretError(RunError):
    """`EDITION_UNSUBSCRIBE_SECRET` is missing or too short (its value is never shown)."""


class InvalidToken(EditionError):
    """An unsubscribe token that was cut, edited or signed with another secret."""


@dataclass(frozen=True)
class Subscriber:
    """Who a valid token names."""

    campaign: str
    customer_id: str
    address_hash: str   # 32 hex digits, or "" when the customer had no address
    locale: str = ""    # the customer's locale when the link was made ("" in older links)


# -- secrets -------------------------------------------------------------------------


def secrets_from_env(environ: Mapping[str, str] | None = None) -> tuple[bytes, ...]:
    """The secrets in `EDITION_UNSUBSCRIBE_SECRET`, the signing one first.

    Raises UnsubscribeSecretError (exit 1) when it is unset or a secret is too short.
    """
    raw = (os.environ if environ is None else environ).get(SECRET_ENV, "")
    found = tuple(s for s in _SPLIT.split(raw.strip()) if s)
    if not found:
        raise UnsubscribeSecretError(
            f"{SECRET_ENV} is not set: marketing e-mail needs it to sign the unsubscribe "
            f"links (make one with: python -c \"import secrets; "
            f"print(secrets.token_urlsafe(32))\", and keep it: links already sent need it)")
    if any(len(s) < MIN_SECRET_LENGTH for s in found):
        raise UnsubscribeSecretError(
            f"{SECRET_ENV} holds a secret shorter than {MIN_SECRET_LENGTH} characters; "
            f"use a long random one (python -c \"import secrets; "
            f"print(secrets.token_urlsafe(32))\")")
    return tuple(s.encode("utf-8") for s in found)


def _as_secrets(secret: bytes | str | Sequence[bytes | str]) -> tuple[bytes, ...]:
    items = [secret] if isinstance(secret, bytes | str) else list(secret)
    found = tuple(s.encode("utf-8") if isinstance(s, str) else bytes(s) for s in items)
    if not found or any(not s for s in found):
        raise UnsubscribeSecretError("an empty unsubscribe secret")
    return found


@functools.lru_cache(maxsize=16)
def _keys(secret: bytes) -> tuple[bytes, bytes]:
    """Separate keys for the tag and the keystream, derived from the one secret (once per
    secret and process: two HMACs that every token of a run would repeat)."""
    mac = hmac.new(secret, b"edition unsubscribe token/mac", hashlib.sha256).digest()
    enc = hmac.new(secret, b"edition unsubscribe token/enc", hashlib.sha256).digest()
    return mac, enc


# -- tokens --------------------------------------------------------------------------


def _keystream(key: bytes, nonce: bytes, length: int) -> bytes:
    blocks = []
    for counter in range((length + 31) // 32):
        blocks.append(hmac.new(key, nonce + counter.to_bytes(4, "big"), hashlib.sha256).digest())
    return b"".join(blocks)[:length]


def _xor(data: bytes, stream: bytes) -> bytes:
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(
        len(data), "big")


def token_locale(locale: object) -> str:
    """The locale a token carries: a language tag as given, else "" (left out)."""
    text = str(locale or "").strip()
    return text if len(text) <= _MAX_LOCALE and _LOCALE.match(text) else ""


def _payload(campaign: str, customer_id: str, hashed: str, locale: str = "") -> bytes:
    name = campaign.encode("utf-8")
    ident = customer_id.encode("utf-8", "surrogatepass")
    if len(name) > 255 or len(ident) > 65535:
        raise ValueError("campaign name or customer id too long for an unsubscribe token")
    digest = bytes.fromhex(hashed) if hashed else bytes(_HASH_BYTES)
    tail = bytes([len(locale)]) + locale.encode("ascii") if locale else b""
    return bytes([len(name)]) + name + len(ident).to_bytes(2, "big") + ident + digest + tail


def _parse(payload: bytes, version: bytes) -> Subscriber:
    n = payload[0]
    name = payload[1:1 + n]
    m = int.from_bytes(payload[1 + n:3 + n], "big")
    ident = payload[3 + n:3 + n + m]
    digest = payload[3 + n + m:3 + n + m + _HASH_BYTES]
    rest = payload[3 + n + m + _HASH_BYTES:]
    locale = b""
    if version == _VERSION_LOCALE:
        locale = rest[1:1 + rest[0]] if rest else b""
        if not rest or len(rest) != 1 + rest[0]:
            raise ValueError("bad layout")
    elif rest:
        raise ValueError("bad layout")
    if len(name) != n or len(ident) != m or len(digest) != _HASH_BYTES:
        raise ValueError("bad layout")
    hashed = "" if digest == bytes(_HASH_BYTES) else digest.hex()
    return Subscriber(name.decode("utf-8"), ident.decode("utf-8", "surrogatepass"), hashed,
                      locale.decode("ascii"))


def make_token(*, campaign: str, customer_id: str, address: str | None,
               secret: bytes | str | Sequence[bytes | str], locale: str | None = None) -> str:
    """The URL-safe token for one customer of one campaign (signed with the first secret).

    With the customer's `locale` (a language tag) the token carries it too, so the
    unsubscribe page speaks the customer's language; tokens without one stay valid."""
    mac_key, enc_key = _keys(_as_secrets(secret)[0])
    tag_locale = token_locale(locale)
    version = _VERSION_LOCALE if tag_locale else _VERSION
    payload = _payload(campaign, customer_id, address_hash(address), tag_locale)
    tag = hmac.new(mac_key, version + payload, hashlib.sha256).digest()[:_TAG_BYTES]
    sealed = version + tag + _xor(payload, _keystream(enc_key, tag, len(payload)))
    return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")


def verify(token: str, secret: bytes | str | Sequence[bytes | str]) -> Subscriber:
    """Who the token names; InvalidToken if it was cut, edited or made with another secret."""
    if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN_CHARS \
            or not _TOKEN_CHARS.match(token):
        raise InvalidToken("not an unsubscribe token")
    try:
        sealed = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise InvalidToken("not an unsubscribe token") from None
    # only the canonical spelling: base64's unused low bits of the last character must not
    # let two different strings pass as the same token
    if base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii") != token:
        raise InvalidToken("not an unsubscribe token")
    version = sealed[:1]
    if len(sealed) < 1 + _TAG_BYTES + 4 or version not in (_VERSION, _VERSION_LOCALE):
        raise InvalidToken("not an unsubscribe token (unknown version or too short)")
    tag, body = sealed[1:1 + _TAG_BYTES], sealed[1 + _TAG_BYTES:]
    for candidate in _as_secrets(secret):
        mac_key, enc_key = _keys(candidate)
        payload = _xor(body, _keystream(enc_key, tag, len(body)))
        expected = hmac.new(mac_key, version + payload, hashlib.sha256).digest()[:_TAG_BYTES]
        if hmac.compare_digest(expected, tag):
            try:
                return _parse(payload, version)
            except (ValueError, IndexError, UnicodeDecodeError):
                break  # authentic but unreadable: cannot happen with our own tokens
    raise InvalidToken("the unsubscribe token does not verify (edited, cut, or signed "
                       "with another secret)")


# -- URLs and headers ----------------------------------------------------------------


def with_token(base: str, token: str) -> str:
    """`base` with the token added: `?token=` for http(s), the subject for mailto.

    An existing query string (and fragment) is kept; a mailto's subject gets the token
    appended, so whoever reads that mailbox can verify it.
    """
    parts = urlsplit(base)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if parts.scheme == "mailto":
        subject = next((v for k, v in query if k.lower() == "subject"), "unsubscribe")
        query = [(k, v) for k, v in query if k.lower() != "subject"]
        query.append(("subject", f"{subject} {token}"))
        return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))
    query = [(k, v) for k, v in query if k != TOKEN_PARAM] + [(TOKEN_PARAM, token)]
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


_SENTINEL = "edtoken0sentinel"


@functools.lru_cache(maxsize=64)
def _around_token(base: str) -> tuple[str, str] | None:
    """What with_token puts before and after the token for this base (None: unusual)."""
    probe = with_token(base, _SENTINEL)
    if probe.count(_SENTINEL) != 1 or _SENTINEL in base:
        return None
    head, _, tail = probe.partition(_SENTINEL)
    return head, tail


def _tokened(base: str, token: str) -> str:
    """with_token(base, token), without splitting and re-joining the base per customer
    (that was most of a link's cost): the token is percent-encoded the way urlencode
    encodes it, character by character, so the result is the same string."""
    around = _around_token(base)
    if around is None:
        return with_token(base, token)
    return around[0] + quote(token, safe="") + around[1]


def unsubscribe_url(base: str, *, campaign: str, customer_id: str, address: str | None,
                    secret: bytes | str | Sequence[bytes | str],
                    locale: str | None = None) -> str:
    """The customer's unsubscribe link: the campaign's `unsubscribe_url` plus a signed token."""
    return with_token(base, make_token(campaign=campaign, customer_id=customer_id,
                                       address=address, secret=secret, locale=locale))


def token_of(url: str) -> str | None:
    """The token in an unsubscribe URL (http(s): `?token=`; mailto: the subject's last word)."""
    parts = urlsplit(url)
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if parts.scheme == "mailto" and key.lower() == "subject":
            return value.rsplit(" ", 1)[-1] or None
        if key == TOKEN_PARAM:
            return value or None
    return None


def list_unsubscribe_headers(*links: str | None) -> dict[str, str]:
    """`List-Unsubscribe` (RFC 2369) for the given links, https first, and
    `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058) when one is https.

    RFC 8058 allows one-click only for an https URL; a plain http or mailto link still
    goes into List-Unsubscribe, without the Post header. No links: no headers.
    """
    usable = [link for link in links if link]
    ordered = sorted(usable, key=lambda u: (not u.startswith("https://"),
                                            not u.startswith("http://")))
    if not ordered:
        return {}
    headers = {"List-Unsubscribe": ", ".join(f"<{link}>" for link in ordered)}
    if any(link.startswith("https://") for link in ordered):
        headers["List-Unsubscribe-Post"] = ONE_CLICK
    return headers


@dataclass(frozen=True)
class UnsubscribeLinks:
    """One campaign's unsubscribe links, made once per process and asked per customer.

    `url()` is the link for the message body (the web page when there is one);
    `headers()` the List-Unsubscribe headers for the .eml. Pickling keeps the secret out
    of the pickle: the copy reads it again from the environment where it is unpickled.
    """

    campaign: str
    base: str
    mailto: str | None = None
    signed: bool = True
    _secret: bytes = field(default=b"", repr=False, compare=False)
    preferences: str | None = None   # the preference center's URL (campaign.preferences.url)
    # the last customer's token: the body's link, the preference link and List-Unsubscribe
    # carry the same one, sealed once per customer
    _last: tuple[str, str | None, str | None, str] | None = field(
        default=None, init=False, repr=False, compare=False)

    @classmethod
    def for_campaign(cls, campaign: Campaign, environ: Mapping[str, str] | None = None, *,
                     allow_unsigned: bool = False) -> UnsubscribeLinks | None:
        """The links of a campaign, or None for one that carries none (transactional).

        A marketing campaign without `unsubscribe_url` is a ContentError (exit 2); a
        missing secret an UnsubscribeSecretError (exit 1) unless `allow_unsigned`, which
        gives links marked unsigned (for a dry-run preview: they cannot be verified, and
        `signed` is False so nothing made with them may be sent).
        """
        center = getattr(campaign, "preferences", None)   # a stand-in campaign may lack it
        if campaign.kind == "transactional":
            # no unsubscribe and no List-Unsubscribe (a bill must come), but the
            # preference center's signed link when it has one ("the bill as a PDF, on
            # the 1st"): a link object with no unsubscribe base
            if center is None:
                return None
            return cls.build(campaign.name, "", None, environ,
                             allow_unsigned=allow_unsigned, preferences=center.url)
        if not campaign.unsubscribe_url:
            raise ContentError("unsubscribe_url is required for marketing e-mail (an https "
                               "URL where the unsubscribe server answers), or set kind: "
                               "transactional", campaign.file)
        return cls.build(campaign.name, campaign.unsubscribe_url, campaign.unsubscribe_mailto,
                         environ, allow_unsigned=allow_unsigned,
                         preferences=center.url if center is not None else None)

    @classmethod
    def build(cls, campaign: str, base: str, mailto: str | None = None,
              environ: Mapping[str, str] | None = None, *,
              allow_unsigned: bool = False, preferences: str | None = None
              ) -> UnsubscribeLinks:
        try:
            secret = secrets_from_env(environ)[0]
        except UnsubscribeSecretError:
            if not allow_unsigned:
                raise
            return cls(campaign, base, mailto, signed=False, preferences=preferences)
        return cls(campaign, base, mailto, signed=True, _secret=secret,
                   preferences=preferences)

    def token(self, customer_id: str, address: str | None, locale: str | None = None) -> str:
        if not self.signed:
            return _UNSIGNED
        last = self._last   # one read: another thread may replace it meanwhile
        if last is not None and last[0] == customer_id and last[1] == address \
                and last[2] == locale:
            return last[3]
        token = make_token(campaign=self.campaign, customer_id=customer_id, address=address,
                           secret=self._secret, locale=locale)
        object.__setattr__(self, "_last", (customer_id, address, locale, token))
        return token

    @property
    def unsubscribes(self) -> bool:
        """False for a transactional campaign's links: a preference link only."""
        return bool(self.base)

    def url(self, customer_id: str, address: str | None, locale: str | None = None) -> str:
        """The link for the message body (the page then speaks the customer's `locale`)."""
        return _tokened(self.base, self.token(customer_id, address, locale))

    def preferences_url(self, customer_id: str, address: str | None,
                        locale: str | None = None) -> str | None:
        """The customer's preference-center link: the same signed token (same secret,
        same rotation) on the campaign's `preferences.url`; None without one."""
        if not self.preferences:
            return None
        return _tokened(self.preferences, self.token(customer_id, address, locale))

    def headers(self, customer_id: str, address: str | None,
                locale: str | None = None) -> dict[str, str]:
        """List-Unsubscribe (+ List-Unsubscribe-Post when the link is https); none for
        a transactional campaign."""
        if not self.unsubscribes:
            return {}
        token = self.token(customer_id, address, locale)
        extra = _tokened(self.mailto, token) if self.mailto else None
        return list_unsubscribe_headers(_tokened(self.base, token), extra)

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (self.campaign, self.base, self.mailto, self.signed,
                           self.preferences))


def _rebuild(campaign: str, base: str, mailto: str | None, signed: bool,
             preferences: str | None = None) -> UnsubscribeLinks:
    return UnsubscribeLinks.build(campaign, base, mailto, allow_unsigned=not signed,
                                  preferences=preferences)


__all__ = ["ONE_CLICK", "SECRET_ENV", "TOKEN_PARAM", "InvalidToken", "Subscriber",
           "UnsubscribeLinks", "UnsubscribeSecretError", "address_hash", "list_unsubscribe_headers",
           "make_token", "match_address", "secrets_from_env", "token_locale", "token_of",
           "unsubscribe_url", "verify", "with_token"]


def send_blockers(campaign: Campaign, *, makes_email: bool,
                  environ: Mapping[str, str] | None = None) -> list[str]:
    """Why a send of this campaign's e-mail would be refused now, as `run --send` would
    refuse it (empty: it would not). For a dry run to say up front."""
    if not makes_email or campaign.kind == "transactional":
        return []
    if not campaign.unsubscribe_url:
        return [NO_URL]
    try:
        secrets_from_env(environ)
    except UnsubscribeSecretError as exc:
        return [f"the unsubscribe links are unsigned: {exc}"]
    return []
