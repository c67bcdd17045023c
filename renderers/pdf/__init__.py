"""PDF editions with WeasyPrint: a naive one-document render and a fast batch path.

The fast path lays out each version once, with the personal layer replaced by
sentinels, and writes its pages once. Per customer it lays out again only the blocks
that hold personal text, checks that they occupy exactly the space the version's
blocks did, and stamps them onto the shared pages; personal links are patched in the
PDF link annotations. Whenever that check fails, the customer gets a full render.

A stamp is drawn straight to PDF when the personal blocks are paragraphs of plain
text: their lines laid out again by WeasyPrint's line layout with the arguments the
version's layout gave it (in a table cell, once WeasyPrint's table layout has given the
customer's text the version's columns), drawn by WeasyPrint's drawing code, with the version's own
font subsets (which embed the glyphs names are likely to need). Otherwise, or when a
customer's text needs more, the blocks are laid out in a cut-down document (everything
else hidden, everything after them cut) written to PDF and read back.

It leans on WeasyPrint 70.0 internals (pinned; on any other release `pin` warns and
every PDF is rendered whole) (page boxes, line layout, drawing, fonts,
``find_stylesheets``) and on pypdf's raw stream data; tests/test_pdf.py compares its
pages pixel by pixel with whole renders, so an upgrade that breaks it shows there.
A PdfBatchRenderer renders one document at a time (a lock); use one per process.

Whatever a template or module names, a render fetches only files under the content
root, the fonts edition ships (renderers/fonts) and https from the campaign's allowed
hosts; the print stylesheet pins those fonts under the generic and web-safe names, so a
PDF does not depend on the fonts the host has.

Modules, each importing only those listed before it:

- fetcher: what a render may fetch (the content root, shipped fonts, allowed hosts)
- resources: the URLs a document names, checked with the fetcher (for preflight)
- fontfaces: the shipped fonts, pinned with @font-face under the names templates use
- css: the print stylesheet (shipped fonts, print rules, furniture) and where it goes
- slots: a version's holes in its HTML, and the sentinels that stand for them
- stats: how the customers of a batch were rendered
- layout: what the fast path reads from WeasyPrint's boxes; mini documents
- relayout: a personal paragraph's lines laid out again per customer
- tables: the auto table layout around a personal paragraph, checked per customer
- paint: personal blocks drawn to a PDF content stream
- engine: WeasyPrint set up once per batch (print CSS, fonts, images)
- assembly: PDF object surgery, a version's PDF reassembled per customer
- fonts: the fonts of stamps drawn straight to PDF
- direct: stamps drawn straight to PDF (relayout, paint, fonts, assembly)
- model: a version prepared for sharing, and its customers' stamps
- renderer: PdfBatchRenderer and render_pdf (the naive path)
- pool: render_versions, the batch renderer on a process pool
- pin: the WeasyPrint release the fast path was written for, and the guard on others
"""

from renderers.pdf.css import PAGE_SIZES, print_rules, print_stylesheet, with_print_css
from renderers.pdf.fetcher import ContentFetcher, FetchRefused
from renderers.pdf.pool import render_versions
from renderers.pdf.renderer import PdfBatchRenderer, SharedDocument, render_pdf
from renderers.pdf.resources import Problem, ResourceCheck
from renderers.pdf.stats import PdfStats

__all__ = [
    "PAGE_SIZES",
    "ContentFetcher",
    "FetchRefused",
    "PdfBatchRenderer",
    "PdfStats",
    "Problem",
    "ResourceCheck",
    "SharedDocument",
    "print_rules",
    "print_stylesheet",
    "render_pdf",
    "render_versions",
    "with_print_css",
]
