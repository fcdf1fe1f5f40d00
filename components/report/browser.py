"""Opens a report in real headless Chromium (Debian's package; Playwright drives it, and never
downloads a browser) and returns what a reader would see: console and page errors, failed loads,
the images' decoded sizes, the tables' text, and a screenshot.

    python -m deepattraction.components.report.browser REPORT.html --screenshot build/report.png"""
from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import sys
import tempfile

CHROMIUM = "/usr/bin/chromium"
FLAGS = ("--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync")
VIEWPORT_HEIGHT = 900


@dataclasses.dataclass
class PageView:
    title: str
    console_errors: list[str]
    page_errors: list[str]
    failed_requests: list[str]
    images: list[dict]  # {"alt", "width" (naturalWidth), "complete"} per <img>, in page order
    tables: dict  # table class -> its text
    galleries: dict  # gallery section id -> number of thumbnails
    tops: dict  # element id -> its top edge in CSS pixels from the top of the page
    viewport_height: int  # the first screen ends here


def view(html_path: str, screenshot: str | None = None, chromium: str = CHROMIUM, width: int = 1280) -> PageView:
    from playwright.sync_api import sync_playwright

    if not os.access(chromium, os.X_OK):
        raise FileNotFoundError(f"{chromium} not found: install Debian's chromium (make browser)")
    console, errors, failed = [], [], []
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(profile, executable_path=chromium, headless=True, args=list(FLAGS),
                                                   viewport={"width": width, "height": VIEWPORT_HEIGHT})
        try:
            page = ctx.new_page()
            page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("requestfailed", lambda r: failed.append(f"{r.url[:80]}: {r.failure}"))
            page.goto(pathlib.Path(html_path).absolute().as_uri(), wait_until="load")
            images = page.evaluate("[...document.images].map(i => ({alt: i.alt, width: i.naturalWidth, "
                                   "complete: i.complete}))")
            tables = page.evaluate("Object.fromEntries([...document.querySelectorAll('table')].map(t => "
                                   "[t.className, t.innerText]))")
            galleries = page.evaluate("Object.fromEntries([...document.querySelectorAll('section.gallery')]"
                                      ".map(s => [s.id, s.querySelectorAll('figure.thumb img').length]))")
            tops = page.evaluate("Object.fromEntries([...document.querySelectorAll('[id]')].map(e => "
                                 "[e.id, e.getBoundingClientRect().top + window.scrollY]))")
            if screenshot:
                page.screenshot(path=screenshot, full_page=True)
            return PageView(page.title(), console, errors, failed, images, tables, galleries, tops, VIEWPORT_HEIGHT)
        finally:
            ctx.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="open a report in headless Chromium; report errors; screenshot")
    p.add_argument("report")
    p.add_argument("--screenshot", help="PNG of the whole page")
    a = p.parse_args(argv)
    if a.screenshot:
        os.makedirs(os.path.dirname(os.path.abspath(a.screenshot)), exist_ok=True)
    v = view(a.report, a.screenshot)
    broken = [i["alt"] for i in v.images if not i["width"]]
    print(f"{a.report}: {len(v.images)} images ({len(broken)} broken), tables {sorted(v.tables)}, "
          f"galleries {v.galleries}"
          + (f"; screenshot {a.screenshot}" if a.screenshot else ""))
    for e in v.console_errors + v.page_errors + v.failed_requests + [f"broken image {b}" for b in broken]:
        print(f"error: {e}")
    return 1 if v.console_errors or v.page_errors or v.failed_requests or broken else 0


if __name__ == "__main__":
    sys.exit(main())
