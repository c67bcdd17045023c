"""WeasyPrint set up once for a batch: the print stylesheet, fonts, images and the
confined URL fetcher shared by every document it renders."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from weasyprint import CSS, HTML
from weasyprint.document import Document
from weasyprint.text.fonts import FontConfiguration

from renderers.pdf.css import display_name, page_words, print_stylesheet, with_print_css
from renderers.pdf.fetcher import ContentFetcher


def content_root(root: str | Path | None, templates_dir: str | Path | None) -> Path:
    """The folder whose files a render may read: given, else the templates' parent."""
    if root is not None:
        return Path(root)
    return Path("templates" if templates_dir is None else templates_dir).resolve().parent


class Engine:
    """Renders documents with one font configuration, image cache and URL fetcher."""

    def __init__(
        self,
        *,
        base_url: str | None = None,
        page_size: str = "A4",
        campaign_name: str | Mapping[str, str] | None = None,
        templates_dir: str | Path | None = None,
        root: str | Path | None = None,
        allow_hosts: Iterable[str] = (),
    ) -> None:
        self.base_url = base_url
        self.fetcher = ContentFetcher(content_root(root, templates_dir), allow_hosts=allow_hosts)
        self._css_options = {"page_size": page_size, "campaign_name": campaign_name,
                             "templates_dir": templates_dir}
        self.css = print_stylesheet(**self._css_options)  # checks page_size now
        self._css_by_furniture: dict[tuple[str | None, ...], str] = {}
        self.font_config = FontConfiguration()
        self.cache: dict[str, Any] = {}  # images, across documents
        # WeasyPrint Font objects that stamps draw with, by Pango font key: each holds a
        # whole font file, so the versions of a batch share them.
        self.stamp_fonts: dict[Any, Any] = {}
        self._sheets: dict[str, CSS] = {}

    def stylesheet(self, text: str) -> CSS:
        """``text`` parsed once as a user stylesheet."""
        if text not in self._sheets:
            self._sheets[text] = CSS(string=text, font_config=self.font_config)
        return self._sheets[text]

    def furniture(self, locale: str | None) -> tuple[str | None, ...]:
        """What an edition's locale changes in the print stylesheet: the furniture's
        words and the display name (a handful, whatever locales the customers have)."""
        return (*page_words(locale), display_name(self._css_options["campaign_name"], locale))

    def css_for(self, locale: str | None) -> str:
        """The print stylesheet of an edition in ``locale``."""
        key = self.furniture(locale)
        if key not in self._css_by_furniture:
            self._css_by_furniture[key] = print_stylesheet(**self._css_options, locale=locale)
        return self._css_by_furniture[key]

    def html(self, html: str, locale: str | None = None) -> HTML:
        """A document with the print stylesheet in it, fetching only what it may."""
        return HTML(string=with_print_css(html, self.css_for(locale)), base_url=self.base_url,
                    url_fetcher=self.fetcher)

    def render(
        self,
        document: HTML,
        stylesheets: list[CSS] | None = None,
        *,
        counter_style: Any = None,
        color_profiles: dict[str, Any] | None = None,
    ) -> Document:
        """Lay ``document`` out with the shared fonts and images."""
        # A version passes its own @counter-style and @color-profile registries: its
        # stylesheets are parsed once, and registered those there.
        return document.render(
            font_config=self.font_config,
            counter_style=counter_style,
            color_profiles=color_profiles,
            stylesheets=stylesheets or [],
            cache=self.cache,
        )

    def render_pdf(self, html: str, locale: str | None = None) -> bytes:
        """The whole render of one document, as render_pdf gives it."""
        return self.render(self.html(html, locale)).write_pdf()
