"""A PDF render fetches only files under the content root, the fonts edition ships,
data: URIs and https from the hosts a campaign allows (design.md, Safety; issue 17,
finding 9). WeasyPrint's own fetcher made the render host connect to 127.0.0.1 for a
module's image, and put a file from outside the content root into every PDF.

Preflight names each refused or failed fetch (module or template, URL, why) and the
run stops before anything is rendered (exit 2); the render itself is confined too, for
whatever preflight does not see (a URL from a customer's row).
"""

from __future__ import annotations

import base64
import io
import socketserver
import ssl
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from pypdf import PdfReader

from renderers.pdf import PdfBatchRenderer, render_pdf

TEMPLATE = """<!doctype html>
<html lang="{{ locale }}"><head><meta charset="utf-8"><title>Garden club</title>
<style>.banner { background: #0b2e13; color: #f4f1de; padding: 16px; }</style>
</head><body>
<div class="banner"><h1>Garden club</h1></div>
<p>Dear {{ customer.first_name | default('member') }},</p>
{% for a in articles %}<article><h2>{{ a.title }}</h2>{{ a.html }}</article>{% endfor %}
EXTRA
</body></html>
"""


class Listener:
    """A TCP listener on 127.0.0.1 that records every connection (HTTP or TLS alike)."""

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        seen: list[bytes] = []

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                connection = self.request
                try:
                    if context is not None:
                        connection = context.wrap_socket(connection, server_side=True)
                    connection.settimeout(5)
                    data = connection.recv(4096)
                    seen.append(data)
                    connection.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: image/png\r\n\r\n"
                                       + png((9, 9, 9)))
                except (OSError, ssl.SSLError):
                    seen.append(b"<no request>")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.connections = seen
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


def png(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (24, 12), colour).save(buffer, "PNG")
    return buffer.getvalue()


def images_in(pdf: bytes) -> int:
    """Images drawn on the PDF's pages, as poppler lists them."""
    with tempfile.NamedTemporaryFile(suffix=".pdf") as handle:
        handle.write(pdf)
        handle.flush()
        listing = subprocess.run(["pdfimages", "-list", handle.name], check=True,
                                 capture_output=True, text=True).stdout
    return len(listing.splitlines()) - 2   # two header lines


def site(content_tree: Callable[..., Path], tmp_path: Path, *, extra: str = "",
         articles: dict[str, Any] | None = None, pdf: dict[str, Any] | None = None,
         count: int = 2) -> Path:
    """An outside team's content root, with a secret file beside it (not under it)."""
    (tmp_path / "secret.png").write_bytes(png((0, 200, 0)))
    root = content_tree(
        campaigns={"garden.yaml": {
            "name": "garden-club", "template": "garden.html.j2", "formats": ["pdf"],
            "kind": "transactional", "customers": "data/customers.csv",
            "slots": {"articles": {"kind": "article", "count": count}},
            **({"pdf": pdf} if pdf else {})}},
        templates={"garden.html.j2": TEMPLATE.replace("EXTRA", extra)},
        articles=articles or {"roses.md": {"title": "Pruning roses",
                                           "body": "Cut above an outward bud.\n"},
                              "tulips.md": {"title": "Tulips", "body": "Plant in autumn.\n"}},
        customers={"customers.csv": [{"id": "1", "email": "a@x.example", "first_name": "Ann"},
                                     {"id": "2", "email": "b@x.example", "first_name": "Bo"}]},
    )
    (root / "templates" / "img").mkdir()
    (root / "templates" / "img" / "logo.png").write_bytes(png((200, 0, 0)))
    return root


def test_preflight_names_each_module_and_url_and_fetches_nothing(
    content_tree: Callable[..., Path], tmp_path: Path, cli: Callable[..., Any],
    listener: Listener,
) -> None:
    port = listener.port
    articles = {
        "roses.md": {"title": "Roses", "body": f"Cut.\n\n![rose](http://127.0.0.1:{port}/x.png)\n"},
        "tulips.md": {"title": "Tulips",
                      "body": f"Plant.\n\n![t](https://127.0.0.1:{port}/t.png)\n"},
        "passwd.md": {"title": "Passwords",
                      "body": "Look.\n\n![p](../../../../../../../../../../etc/passwd)\n"},
        "escape.md": {"title": "Escape", "body": "Look.\n\n![e](../../../secret.png)\n"},
    }
    root = site(content_tree, tmp_path, articles=articles, count=4)
    (root / "templates" / "logo.png").symlink_to(tmp_path / "secret.png")
    (root / "templates" / "garden.html.j2").write_text(TEMPLATE.replace(
        "EXTRA", '<img src="logo.png" alt="a symlink out of the root">\n'
                 f'<img src="{(tmp_path / "secret.png").as_uri()}" alt="file URL">\n'
                 '<a rel="attachment" href="../data/customers.csv">customers</a>'),
        encoding="utf-8")
    (root / "templates" / "print.css").write_text(
        "@page { margin: 20mm }\n.banner { background: url(../../secret.png) }\n",
        encoding="utf-8")
    out = tmp_path / "out"
    code, stdout, stderr = cli("run", "campaigns/garden.yaml", "--out", out, cwd=root)
    text = stdout + stderr
    assert listener.connections == []
    assert code == 2, text
    assert "Traceback" not in text
    assert not (out / "pdf").exists()
    for module in articles:   # each module by its file and line, id and URL
        assert f"articles/{module}:6: PDF: module '{module[:-3]}' asks for " in text, text
    assert f"http://127.0.0.1:{port}/x.png: refused: plain http" in text
    assert f"https://127.0.0.1:{port}/t.png: refused: 127.0.0.1 is not in" in text
    assert "(file:///etc/passwd): refused: a file outside the content root" in text
    assert "../../../secret.png (file://" in text
    # the template's own references, named with its file and line
    assert "templates/garden.html.j2:8: PDF: the template asks for logo.png (file://" in text
    assert f"templates/garden.html.j2:9: PDF: the template asks for " \
           f"{(tmp_path / 'secret.png').as_uri()}: refused" in text
    assert "templates/garden.html.j2:10: PDF: the template asks for ../data/customers.csv" in text
    assert "not an image, stylesheet or font" in text
    assert "templates/print.css:2: PDF: the print stylesheet asks for " in text
    assert listener.connections == []
    # validate says the same, before any run
    code, stdout, stderr = cli("validate", "campaigns/garden.yaml", cwd=root)
    assert code == 2 and f"http://127.0.0.1:{port}/x.png" in stdout + stderr
    assert listener.connections == []


def test_the_render_itself_fetches_nothing_outside(
    content_tree: Callable[..., Path], tmp_path: Path, listener: Listener,
) -> None:
    """Without preflight (a URL that only a customer's row holds), the render is confined."""
    root = site(content_tree, tmp_path)
    (root / "templates" / "linked.png").symlink_to(tmp_path / "secret.png")
    (root / ".git").mkdir()
    (root / ".git" / "logo.png").write_bytes(png((0, 0, 200)))
    port = listener.port
    hostile = [
        f"http://127.0.0.1:{port}/img.png", f"https://127.0.0.1:{port}/img.png",
        f"//127.0.0.1:{port}/img.png", "../../secret.png", "../../../../../../etc/passwd",
        "linked.png", (tmp_path / "secret.png").as_uri(), "file:///etc/passwd",
        f"file://127.0.0.1:{port}/etc/passwd", "../.git/logo.png", "../data/customers.csv",
        f"ftp://127.0.0.1:{port}/x.png",
    ]
    body = "".join(f'<img src="{url}" alt="x">' for url in hostile)
    body += (f'<div style="background: url(http://127.0.0.1:{port}/bg.png)">bg</div>'
             f'<link rel="stylesheet" href="http://127.0.0.1:{port}/s.css">'
             '<link rel="attachment" href="../data/customers.csv">'
             '<a rel="attachment" href="file:///etc/passwd">passwd</a>')
    html = f"<!doctype html><html><head><style>@import url(http://127.0.0.1:{port}/i.css);" \
           f"</style></head><body><p>Hello</p>{body}</body></html>"
    # The content root: by default the folder that holds templates/.
    renderer = PdfBatchRenderer(templates_dir=root / "templates",
                                base_url=(root / "templates").as_uri() + "/")
    pdf = renderer.render_one(html)
    assert listener.connections == []
    assert images_in(pdf) == 0
    assert PdfReader(io.BytesIO(pdf)).attachments == {}
    problems = renderer.engine.fetcher.problems
    assert all(reason.startswith("refused") for reason in problems.values()), problems
    assert len(problems) >= 12
    # the naive path is confined the same way
    naive = render_pdf(html, templates_dir=root / "templates",
                       base_url=(root / "templates").as_uri() + "/")
    assert images_in(naive) == 0 and listener.connections == []


def test_what_a_render_may_fetch_it_still_does(
    content_tree: Callable[..., Path], tmp_path: Path, cli: Callable[..., Any],
) -> None:
    """An image under templates/, one elsewhere under the root (through a symlink that
    stays inside), a data: URI: preflight passes, and each is in every PDF."""
    root = site(content_tree, tmp_path, extra="")
    (root / "assets").mkdir()
    (root / "assets" / "flower.png").write_bytes(png((0, 0, 200)))
    (root / "templates" / "inside.png").symlink_to(root / "assets" / "flower.png")
    data = "data:image/png;base64," + base64.b64encode(png((120, 120, 0))).decode()
    (root / "templates" / "garden.html.j2").write_text(TEMPLATE.replace(
        "EXTRA", f'<img src="img/logo.png" alt="logo"><img src="inside.png" alt="in">'
                 f'<img src="../assets/flower.png" alt="flower"><img src="{data}" alt="d">'),
        encoding="utf-8")
    out = tmp_path / "out"
    code, stdout, stderr = cli("run", "campaigns/garden.yaml", "--out", out, cwd=root)
    assert code == 0, stdout + stderr
    for pdf in sorted((out / "pdf").glob("*.pdf")):
        assert images_in(pdf.read_bytes()) == 4, pdf


def self_signed(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context for 127.0.0.1 and a client context that trusts it."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))
    return server, client


def test_allowed_hosts_https_only(
    content_tree: Callable[..., Path], tmp_path: Path, cli: Callable[..., Any],
) -> None:
    from renderers.pdf import ContentFetcher, FetchRefused

    server_context, client_context = self_signed(tmp_path)
    tls = Listener(server_context)
    try:
        host = f"127.0.0.1:{tls.port}"
        # A fetcher that trusts the test's certificate fetches from an allowed host...
        fetcher = ContentFetcher(tmp_path, allow_hosts=[host], ssl_context=client_context)
        response = fetcher.fetch(f"https://{host}/logo.png")
        assert response.read() == png((9, 9, 9))
        response.close()
        assert len(tls.connections) == 1
        # ...never over plain http, nor from a host or port not listed.
        for url in (f"http://{host}/logo.png", f"https://127.0.0.1:{tls.port + 1}/x.png",
                    f"https://localhost:{tls.port}/x.png"):
            with pytest.raises(FetchRefused):
                fetcher.fetch(url)
        assert len(tls.connections) == 1
        # The campaign opts in with pdf.allow_hosts. A fetch that fails (here: a
        # certificate nobody trusts) is a preflight error naming the module and URL.
        articles = {"roses.md": {"title": "Roses",
                                 "body": f"Cut.\n\n![rose](https://{host}/rose.png)\n"},
                    "tulips.md": {"title": "Tulips", "body": "Plant.\n"}}
        root = site(content_tree, tmp_path, articles=articles, pdf={"allow_hosts": [host]})
        code, stdout, stderr = cli("run", "campaigns/garden.yaml", "--out", tmp_path / "o",
                                   cwd=root)
        assert code == 2, stdout + stderr
        assert (f"articles/roses.md:6: PDF: module 'roses' asks for https://{host}/rose.png: "
                "failed") in stdout + stderr
        assert "CERTIFICATE_VERIFY_FAILED" in stdout + stderr
    finally:
        tls.close()


@pytest.mark.parametrize("hosts", [["https://cdn.acme.example"], ["cdn.acme.example/img"],
                                   "not a host!"])
def test_allow_hosts_takes_host_names(
    hosts: Any, content_tree: Callable[..., Path], tmp_path: Path, cli: Callable[..., Any],
) -> None:
    root = site(content_tree, tmp_path, pdf={"allow_hosts": hosts})
    code, stdout, stderr = cli("validate", "campaigns/garden.yaml", cwd=root)
    assert code == 2, stdout + stderr
    assert "campaigns/garden.yaml" in stdout + stderr and "pdf.allow_hosts" in stdout + stderr
    assert "Traceback" not in stdout + stderr


def test_stylesheets_are_followed_for_what_they_name(tmp_path: Path) -> None:
    """A linked stylesheet and what it @imports are read for their url()s too."""
    from renderers.pdf import ContentFetcher, ResourceCheck

    root = tmp_path / "root"
    (root / "templates" / "css").mkdir(parents=True)
    (tmp_path / "secret.png").write_bytes(png((0, 200, 0)))
    (root / "templates" / "css" / "a.css").write_text(
        '@import "b.css"; .x { background: url(../../../secret.png) }', encoding="utf-8")
    (root / "templates" / "css" / "b.css").write_text(
        ".y { background-image: url('http://127.0.0.1:9/b.png') }", encoding="utf-8")
    html = ('<link rel="stylesheet" href="css/a.css"><p style="background: '
            'url(&quot;file:///etc/hosts&quot;)">x</p>')
    check = ResourceCheck(ContentFetcher(root))
    found = {p.written: p.reason for p in check.problems(html, (root / "templates").as_uri()
                                                         + "/")}
    assert set(found) == {"../../../secret.png", "http://127.0.0.1:9/b.png", "file:///etc/hosts"}
    assert all(reason.startswith("refused") for reason in found.values())
