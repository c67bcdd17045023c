"""Encoding: one customer's rendered documents as the bytes of each format.

html and text are the rendered documents in UTF-8; eml is a multipart message built
by renderers.eml with headers shared by the whole run; pdf comes from the WeasyPrint
batch renderer, which lays out each version's customers together.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, cast

from edition.addresses import clean_name, parse_mailbox
from edition.content.campaign import Campaign
from edition.naming import CONTENT_TYPES, relative_path
from edition.render.editions import Rendered
from edition.render.list_headers import mailing_headers
from edition.render.message_identity import MessageIdentity
from edition.render.tracking import LinkTracker
from edition.render.unsubscribe import UnsubscribeLinks
from edition.render.versions import Version
from renderers import eml

# format -> (path relative to the run folder, bytes, content type)
Files = dict[str, tuple[str, bytes, str]]


class Documents(NamedTuple):
    """One customer's html and text in UTF-8."""

    html: bytes
    text: bytes


class Encoder:
    """Turns rendered editions into files; one per process (it keeps the PDF renderer)."""

    def __init__(self, campaign: Campaign, formats: tuple[str, ...], started: dt.datetime, *,
                 links: UnsubscribeLinks | None = None, mailing: str | None = None):
        self.campaign = campaign
        self.formats = formats
        self.started = started   # the run's clock (the customer's preferred time reads it)
        self.links = links
        # List-Id and Feedback-ID: the same for every message of the mailing
        self.mailing_headers = mailing_headers(campaign, mailing) if mailing else {}
        # X-Edition-Id: a bounce of this message names its customer and mailing
        self.identity = MessageIdentity.for_mailing(campaign.name, mailing) if mailing else None
        # click tracking (`tracking:`): the links of each finished edition, per mailing
        self.tracker = LinkTracker.for_campaign(campaign, mailing)
        self.writer = eml.MessageWriter(
            sender=parse_mailbox(campaign.sender or "edition <edition@localhost.localdomain>"),
            date=started,
            reply_to=parse_mailbox(campaign.reply_to) if campaign.reply_to else None)
        self._pdf: Any = None

    def tracked(self, rendered: Rendered, version: Version, customer_id: str,
                fields: Mapping[str, Any]) -> Rendered:
        """The edition with its links through click tracking, when the campaign tracks."""
        if self.tracker is None:
            return rendered
        return self.tracker.apply(rendered, version, customer_id, fields)

    def content_hash(self, customer_id: str, version_digest: str, rendered: Rendered,
                     documents: Documents | None = None) -> str:
        """Identifies what this customer gets: same content, same hash (and Message-ID).

        Keyed by the version's whole digest, never its short id (two versions may share one)."""
        h = hashlib.sha256()
        for part in (self.campaign.name, customer_id, version_digest, rendered.subject or ""):
            h.update(part.encode("utf-8", "surrogatepass") + b"\0")
        if documents is None:
            for part in (rendered.text or "", rendered.html or ""):
                h.update(part.encode("utf-8", "surrogatepass") + b"\0")
        else:  # the same bytes: UTF-8 of text without surrogates (else it raised already)
            h.update(documents.text + b"\0")
            h.update(documents.html + b"\0")
        return h.hexdigest()

    @staticmethod
    def documents(rendered: Rendered) -> Documents:
        """The html and text as UTF-8, once per customer (hash, files and .eml share them).

        Raises UnicodeError for text that cannot be UTF-8 (a lone surrogate)."""
        return Documents((rendered.html or "").encode(), (rendered.text or "").encode())

    def message_id(self, digest: str) -> str:
        return eml.message_id(digest, self.campaign.name, self.campaign.sender_domain)

    def message(self, customer_id: str, fields: Mapping[str, Any], version_id: str,
                rendered: Rendered, digest: str, documents: Documents | None = None) -> bytes:
        """The customer's .eml: text and HTML alternatives, List-Unsubscribe when set."""
        name = clean_name(" ".join(str(fields[k]) for k in ("first_name", "last_name")
                                   if k in fields))
        address = str(fields["email"])
        headers = (dict(self.links.headers(customer_id, address, fields.get("locale")))
                   if self.links else {})
        headers |= self.mailing_headers | {"X-Edition-Campaign": self.campaign.name,
                                           "X-Edition-Version": version_id}
        if self.identity is not None:
            headers |= self.identity.headers(customer_id, address)
        text: str | bytes = rendered.text or ""
        html: str | bytes | None = rendered.html
        if documents is not None:
            text, html = documents.text, (documents.html if rendered.html is not None else None)
        if fields.get("preferred_format") == "text":   # chosen in the preference center
            html = None
        return self.writer.build(
            subject=rendered.subject or "", recipient=address, recipient_name=name,
            text=text, html=html, msg_id=self.message_id(digest), extra_headers=headers)

    def files(self, customer_id: str, fields: Mapping[str, Any], version_id: str,
              rendered: Rendered, digest: str, pdf: bytes | None = None,
              documents: Documents | None = None) -> Files:
        """Every format of one customer's edition."""
        out: Files = {}
        for fmt in self.formats:
            if fmt in {"html", "text", "eml"} and documents is None:
                documents = self.documents(rendered)
            if fmt == "html":
                data = cast(Documents, documents).html   # made just above
            elif fmt == "text":
                data = cast(Documents, documents).text
            elif fmt == "eml":
                data = self.message(customer_id, fields, version_id, rendered, digest, documents)
                if fields.get("preferred_format") == "pdf":   # chosen in the preference center
                    data = eml.with_attachment(data, pdf if pdf is not None else self.pdf_one(
                        rendered, fields.get("locale")), f"{self.campaign.name}.pdf")
            else:
                data = pdf if pdf is not None else self.pdf_one(rendered)
            out[fmt] = (relative_path(fmt, customer_id), data, CONTENT_TYPES[fmt])
        return out

    # -- PDF -------------------------------------------------------------------------

    def pdf_renderer(self) -> Any:
        """One WeasyPrint batch renderer per process (fonts and layouts are cached in it)."""
        if self._pdf is None:
            from renderers.pdf import PdfBatchRenderer  # WeasyPrint only when PDF is asked

            self._pdf = PdfBatchRenderer(**pdf_options(self.campaign))
        return self._pdf

    def pdf_one(self, rendered: Rendered, locale: str | None = None) -> bytes:
        """One customer's PDF on its own (a preview); ``locale``: the edition's. Without a
        print page (the run makes no pdf), the e-mail's HTML is laid out instead."""
        # the renderer is renderers.pdf's, imported on first use (WeasyPrint): typed Any
        return cast(bytes, self.pdf_renderer().render_one(rendered.page or rendered.html
                                                          or "", locale=locale))

    def pdf_version(self, parts: Sequence[str], pages: Sequence[str],
                    locale: str | None = None,
                    values: Sequence[Sequence[str]] | None = None) -> list[bytes]:
        """The PDFs of one version's customers, laid out together (same order as `pages`).

        `values`: each page's values between `parts`, when known. A value that is empty
        for a customer (a condition on the customer that printed nothing, an empty
        field) is no hole for the layout: laid out with a placeholder there, the version
        would hold a line the customer's page does not. Customers are laid out together
        with those who leave the same values empty, those values folded into the parts;
        so are the values all of them share.
        """
        renderer = self.pdf_renderer()
        if not values or len(parts) < 2:
            return cast(list[bytes], renderer.render_filled(list(parts), list(pages),
                                                            locale=locale))
        # A value every customer of the batch has (a default nobody overrides, such as
        # `customer.receipt_id | default('Receipt')`) is no hole either: laid out as
        # itself, it cannot size a table column differently from a placeholder.
        same = {j for j in range(len(parts) - 1)
                if len(values) > 1 and all(len(own) == len(parts) - 1 and own[j] == values[0][j]
                                           for own in values)}
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, own in enumerate(values):
            empty = tuple(j for j, value in enumerate(own) if value == "" or j in same)
            groups.setdefault(empty, []).append(i)
        out: list[bytes] = [b""] * len(pages)
        for empty, members in groups.items():
            folded = [parts[0]]
            for j, part in enumerate(parts[1:]):
                if j in empty:
                    folded[-1] += values[members[0]][j] + part
                else:
                    folded.append(part)
            pdfs = renderer.render_filled(folded, [pages[i] for i in members], locale=locale)
            for i, pdf in zip(members, pdfs, strict=True):
                out[i] = pdf
        return out


def pdf_options(campaign: Campaign) -> dict[str, Any]:
    """The PDF renderer's settings for a campaign: what it reads (the content root and
    the hosts `pdf.allow_hosts` names), its paper and its running header's name."""
    root = campaign.root.resolve()
    title = campaign.title if isinstance(campaign.title, dict) else campaign.title_for()
    return {"base_url": (root / "templates").as_uri() + "/", "root": root,
            "allow_hosts": campaign.pdf.allow_hosts,
            "page_size": campaign.pdf.page_size,
            "campaign_name": title, "templates_dir": root / "templates"}
