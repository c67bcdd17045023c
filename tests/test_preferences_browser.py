"""The preference page in headless Chromium at 375 px (a phone), driven by keyboard
only: every control has a label, nothing scrolls sideways, the text has contrast, no
JavaScript is needed; the choices made there change the next dry run and show in the
consent export (issue 20: "the preference page driven in headless Chromium")."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from fixtures_preferences import (
    dry_run,
    free_port,
    make_site,
    run_edition,
    web_server,
    write_customers,
)

pytestmark = pytest.mark.soak

CONTRAST = """() => {
  const rgb = s => s.match(/\\d+(\\.\\d+)?/g).slice(0, 3).map(Number);
  const lum = c => { const [r, g, b] = c.map(v => { v /= 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const bgOf = el => { for (; el; el = el.parentElement) {
      const c = getComputedStyle(el).backgroundColor;
      if (c && !c.startsWith('rgba(0, 0, 0, 0)') && c !== 'transparent') return c; }
    return 'rgb(255, 255, 255)'; };
  let worst = 99;
  for (const el of document.querySelectorAll('h1, legend, label, button, option')) {
    const a = lum(rgb(getComputedStyle(el).color)), b = lum(rgb(bgOf(el)));
    worst = Math.min(worst, (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05));
  }
  return worst;
}"""


def test_preference_page_by_keyboard_in_chromium(tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed for the browser test"
    from playwright.sync_api import sync_playwright

    port = free_port()
    root = make_site(tmp_path / "site", f"http://127.0.0.1:{port}")
    customers = write_customers(tmp_path / "customers.csv")
    rows = dry_run(root, customers, tmp_path / "before")
    html = (tmp_path / "before" / rows["c1"]["files"]["html"]).read_text(encoding="utf-8")
    url = re.search(r'id="prefs" href="([^"]+)"', html).group(1).replace("&amp;", "&")
    assert rows["c1"]["modules"] == {"articles": ["travel-a", "cooking-a"]}

    with web_server(root, port), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium,
                                             args=["--no-sandbox", "--no-first-run"])
        try:
            context = browser.new_context(viewport={"width": 375, "height": 700},
                                          java_script_enabled=False)
            page = context.new_page()
            page.set_default_timeout(120_000)
            assert page.goto(url).status == 200
            # every control is reachable by its label
            for name in ("Gardening", "Travel", "Cooking", "Every issue",
                         "At most once a month", "Plain text only", "Large type",
                         "Language"):
                assert page.get_by_label(name, exact=True).count() == 1, name
            probe = browser.new_page(viewport={"width": 375, "height": 700})
            probe.set_default_timeout(120_000)
            probe.goto(url)
            assert probe.evaluate("document.documentElement.scrollWidth") <= 375
            assert probe.evaluate(CONTRAST) >= 4.5
            probe.close()

            # keyboard only: Tab to each control, Space to toggle, arrows for radios
            def focus(label: str) -> None:
                target = (page.get_by_role("button", name=label) if label.startswith("Save")
                          else page.get_by_label(label, exact=True))
                for _ in range(40):
                    page.keyboard.press("Tab")
                    if target.evaluate("el => el === document.activeElement"):
                        return
                raise AssertionError(f"{label} is not reachable with Tab")

            focus("Travel")
            page.keyboard.press("Space")          # travel off
            focus("Cooking")
            page.keyboard.press("Space")          # cooking off: garden stays
            focus("Every issue")
            page.keyboard.press("ArrowDown")      # weekly
            page.keyboard.press("ArrowDown")      # monthly
            focus("Designed e-mail (HTML)")
            page.keyboard.press("ArrowDown")      # text only
            focus("Large type")
            page.keyboard.press("Space")
            focus("Save my choices")
            page.keyboard.press("Enter")
            page.wait_for_selector("#saved")
            assert page.get_by_label("Gardening", exact=True).is_checked()
            assert not page.get_by_label("Travel", exact=True).is_checked()
            assert page.get_by_label("At most once a month", exact=True).is_checked()
            assert page.get_by_label("Plain text only", exact=True).is_checked()
            assert page.get_by_label("Large type", exact=True).is_checked()
        finally:
            browser.close()

    after = dry_run(root, customers, tmp_path / "after")
    assert after["c1"]["modules"] == {"articles": ["garden-a"]}   # travel, cooking: off
    made = (tmp_path / "after" / after["c1"]["files"]["html"]).read_text(encoding="utf-8")
    assert 'class="large"' in made and "format: text" in made
    code, out, err = run_edition("preferences", "export", "--customer", "c1", cwd=root)
    assert code == 0, err
    (record,) = json.loads(out)
    assert record["change"]["topics"] == [None, ["garden"]]
    assert record["change"]["frequency"] == [None, "monthly"]
    assert record["change"]["format"] == [None, "text"]
    assert record["source"] == "web" and record["form"] == "preferences"


def test_unsubscribe_then_subscribe_again_in_chromium(tmp_path: Path) -> None:
    """The customer unsubscribes on the unsubscribe page, then follows its link to the
    preference page and presses "Subscribe again" by keyboard, without JavaScript: the
    next dry run mails them again and the export shows unsubscribe → resubscribe."""
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed for the browser test"
    from playwright.sync_api import sync_playwright

    port = free_port()
    root = make_site(tmp_path / "site", f"http://127.0.0.1:{port}")
    customers = write_customers(tmp_path / "customers.csv")
    rows = dry_run(root, customers, tmp_path / "before")
    html = (tmp_path / "before" / rows["c4"]["files"]["html"]).read_text(encoding="utf-8")
    url = re.search(r'id="unsub" href="([^"]+)"', html).group(1).replace("&amp;", "&")

    with web_server(root, port), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium,
                                             args=["--no-sandbox", "--no-first-run"])
        try:
            context = browser.new_context(viewport={"width": 375, "height": 700},
                                          java_script_enabled=False)
            page = context.new_page()
            page.set_default_timeout(120_000)
            assert page.goto(url).status == 200
            page.click("#unsubscribe")
            page.wait_for_load_state()
            assert dry_run(root, customers, tmp_path / "out")["c4"]["status"] == "suppressed"
            page.goto(url)
            page.click("#preferences")                  # the page's own link, same token
            page.wait_for_selector("#resubscribe")      # in Spanish: c4's language
            button = page.get_by_role("button", name="Volver a suscribirme")
            for _ in range(40):
                if button.evaluate("el => el === document.activeElement"):
                    break
                page.keyboard.press("Tab")
            else:
                raise AssertionError("Subscribe again is not reachable with Tab")
            page.keyboard.press("Enter")
            page.wait_for_selector("#resubscribed")
            assert page.locator("#resubscribe").count() == 0
        finally:
            browser.close()

    back = dry_run(root, customers, tmp_path / "back")
    assert back["c4"]["status"] == "rendered", back["c4"]
    assert back["c4"]["resubscribed"].startswith("subscribed again by the customer on ")
    code, out, err = run_edition("preferences", "export", "--customer", "c4", cwd=root)
    assert code == 0, err
    assert [(r["form"], r["change"]) for r in json.loads(out)] == [
        ("unsubscribe", {"subscribed": ["garden-news", None]}),
        ("resubscribe", {"subscribed": [None, "garden-news"]})]
