"""WeasyPrint set up once for a batch: the print stylesheet, fonts and images shared by
every document it renders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from weasyprint import CSS, HTML
from weasyprint.document import Document
from weasyprint.text.fonts import FontConfiguration

from renderers.pdf.css import print_stylesheet, with_print_css


class Engine:
    """Renders documents with one font configuration and image cache."""

    def __init__(
        self,
        *,
        base_url: str | None = None,
        page_size: str = "A4",
        campaign_name: str | None = None,
        templates_dir: str | Path | None = None,
    ) -> None:
        self.base_url = base_url
        self.css = print_stylesheet(
            page_size=page_size, campaign_name=campaign_name, templates_dir=templates_dir
        )
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

    def html(self, html: str) -> HTML:
        """A document with the print stylesheet in it."""
        return HTML(string=with_print_css(html, self.css), base_url=self.base_url)

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

    def render_pdf(self, html: str) -> bytes:
        """The whole render of one document, as render_pdf gives it."""
        return self.render(self.html(html)).write_pdf()
