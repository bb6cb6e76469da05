"""Shared by the chart, report and docs tests: a golden database with a few defects, and a page
opened in the system Chromium (playwright drives Debian's chromium; no browser is downloaded)."""

from __future__ import annotations

import io
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from driver import browser

# Defects added to the golden input before the build, inside id 1's last year (its newest bar is
# 2024-05-10): four missing days and one row that 1D rejects (NULL open).
GAP_DAYS = ("2024-02-10", "2024-02-11", "2024-02-12", "2024-02-13")
REJECT_DAY = "2024-03-20"
DEFECTS = (
    "delete from price_histories where id = 1 and (\"timestamp\" at time zone 'UTC')::date = any(%s::date[])",
    "update price_histories set open = null where id = 1 and (\"timestamp\" at time zone 'UTC')::date = %s::date",
)


def add_defects(project) -> None:
    project.execute(DEFECTS[0], (list(GAP_DAYS),))
    project.execute(DEFECTS[1], (REJECT_DAY,))


@dataclass
class PageVisit:
    """What a page did while it loaded: console errors, uncaught errors, requests beyond the file."""

    url: str
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    @property
    def network_requests(self) -> list[str]:
        """Every request except the page itself (file://...) and inline data: URLs."""
        return [u for u in self.requests if u != self.url and not u.startswith(("data:", "blob:"))]


@contextmanager
def chromium_page(path: Path, width: int = 1400, height: int = 900, allow: tuple[Path, ...] = ()):
    """Open a local HTML file in headless Chromium; yields (page, visit). Any request the page
    makes is recorded and then aborted (the network is not needed, and must not be), except the
    local files listed in `allow`."""
    from playwright.sync_api import sync_playwright

    url = path.resolve().as_uri()
    visit = PageVisit(url)
    with sync_playwright() as pw:
        flags = [f for f in browser.FLAGS if f != "--headless"]
        chromium = pw.chromium.launch(executable_path=browser.chromium_path(), headless=True, args=flags)
        try:
            context = chromium.new_context(viewport={"width": width, "height": height})
            page = context.new_page()
            page.on("console", lambda m: visit.console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: visit.page_errors.append(str(e)))
            page.on("request", lambda r: visit.requests.append(r.url))
            allowed = {url} | {p.resolve().as_uri() for p in allow}
            context.route("**/*", lambda route: route.continue_() if route.request.url in allowed else route.abort())
            page.goto(url, wait_until="load")
            yield page, visit
        finally:
            chromium.close()


def pixel_stddev(png: bytes) -> float:
    """Standard deviation of the grey levels of a PNG (0 for a blank image)."""
    import numpy as np
    from PIL import Image

    grey = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=float)
    return float(grey.std())
