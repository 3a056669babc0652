"""`make docs-check`: the built site, read as a reader would, in headless Chromium.

    python docs_build/check_site.py [SITE_DIR] [--shots DIR]

Serves SITE_DIR (default site/) over HTTP on localhost (the search runs in a web worker,
which file:// does not allow), opens every page in Debian's Chromium through Playwright's
Python API and checks: no console error, no failed request and no script error on any
page; every image loaded (non-zero naturalWidth); every internal link resolves (the page
exists and so does the #anchor); the search finds the switches page for "dropout". It
saves screenshots of the home page, the claims page and one claim page at desktop and
phone widths for a person to look at. It installs nothing: without Chromium or
Playwright it says how to get them and exits 2.
"""

from __future__ import annotations

import argparse
import functools
import html.parser
import os
import shutil
import sys
import threading
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse

REPO = Path(__file__).resolve().parents[1]
SWITCHES_PAGE = "models-and-switches/"
SEARCH_TERM = "dropout"
SHOTS = {"home": "", "claims": "study/", "claim-dropout": "study/dropout/"}
WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}
INSTALL_HINT = (
    "Chromium: Debian's package, `sudo apt-get install chromium` (or set CHROMIUM to the "
    "executable). Playwright's Python API: `make install` (the docs extra; no browser "
    "download is needed, the check drives the system Chromium)."
)


def chromium_executable() -> str | None:
    """The system Chromium: $CHROMIUM, else `chromium` or `chromium-browser` on PATH."""
    named = os.environ.get("CHROMIUM")
    if named:
        return named if Path(named).is_file() else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def missing_requirements() -> str | None:
    """Why the check cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright's Python package is not installed. " + INSTALL_HINT
    if chromium_executable() is None:
        return "No Chromium executable found. " + INSTALL_HINT
    return None


class _Ids(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs) -> None:
        for name, value in attrs:
            if name in ("id", "name") and value:
                self.ids.add(value)


@dataclass
class Result:
    pages: int = 0
    images: int = 0
    links: int = 0
    search_hits: list[str] = field(default_factory=list)
    screenshots: list[Path] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        verdict = "passed" if not self.errors else f"FAILED ({len(self.errors)} problems)"
        lines = [
            f"docs-check {verdict}: {self.pages} pages, {self.images} images, "
            f"{self.links} internal links checked; search '{SEARCH_TERM}': "
            f"{len(self.search_hits)} results, the switches page "
            f"{'among them' if any(SWITCHES_PAGE in h for h in self.search_hits) else 'MISSING'}",
            *[f"  screenshot: {p}" for p in self.screenshots],
            *[f"  {e}" for e in self.errors],
        ]
        return "\n".join(lines)


def page_paths(site: Path) -> list[str]:
    """Every page's URL path relative to the site root: '' for the home page."""
    paths = []
    for index in sorted(site.rglob("index.html")):
        folder = index.parent.relative_to(site).as_posix()
        paths.append("" if folder == "." else folder + "/")
    return paths


def _serve(site: Path) -> tuple[ThreadingHTTPServer, str]:
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(site))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def _target_file(site: Path, base: str, url: str) -> Path | None:
    path = urlparse(url).path[len(urlparse(base).path) :]
    file = site / path
    if path == "" or path.endswith("/"):
        file = file / "index.html"
    return file if file.is_file() else None


def _ids(file: Path, cache: dict[Path, set[str]]) -> set[str]:
    if file not in cache:
        parser = _Ids()
        parser.feed(file.read_text(errors="replace"))
        cache[file] = parser.ids
    return cache[file]


def check_site(site: Path, shots: Path) -> Result:
    from playwright.sync_api import sync_playwright

    site = site.resolve()
    result = Result()
    server, base = _serve(site)
    ids: dict[Path, set[str]] = {}
    checked_links: set[str] = set()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=chromium_executable(), headless=True
            )
            width, height = WIDTHS["desktop"]
            context = browser.new_context(viewport={"width": width, "height": height})
            page = context.new_page()
            problems: list[str] = []
            page.on(
                "console", lambda m: m.type == "error" and problems.append(f"console: {m.text}")
            )
            page.on("pageerror", lambda e: problems.append(f"script error: {e}"))
            page.on("requestfailed", lambda r: _failed(r) and problems.append(_failed(r)))
            page.on(
                "response",
                lambda r: r.status >= 400 and problems.append(f"HTTP {r.status}: {r.url}"),
            )
            for path in page_paths(site):
                problems.clear()
                url = base + path
                page.goto(url, wait_until="load")
                result.pages += 1
                images = page.evaluate(
                    "() => Array.from(document.images).map(i => [i.currentSrc || i.src,"
                    " i.complete, i.naturalWidth])"
                )
                for src, complete, width in images:
                    result.images += 1
                    if not complete or width == 0:
                        problems.append(f"image not loaded: {src}")
                hrefs = page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
                for href in hrefs:
                    absolute, anchor = urldefrag(urljoin(url, href))
                    if not absolute.startswith(base):
                        continue
                    key = f"{absolute}#{anchor}"
                    if key in checked_links:
                        continue
                    checked_links.add(key)
                    result.links += 1
                    target = _target_file(site, base, absolute)
                    if target is None:
                        problems.append(f"broken link: {href}")
                    elif anchor and target.suffix == ".html" and anchor not in _ids(target, ids):
                        problems.append(f"missing anchor: {href}")
                result.errors += [f"{path or '/'}: {p}" for p in problems]
            result.search_hits = _search(page, base)
            if not any(SWITCHES_PAGE in hit for hit in result.search_hits):
                result.errors.append(
                    f"search: '{SEARCH_TERM}' did not find {SWITCHES_PAGE} "
                    f"(results: {result.search_hits[:5]})"
                )
            shots.mkdir(parents=True, exist_ok=True)
            for width_name, (width, height) in WIDTHS.items():
                page.set_viewport_size({"width": width, "height": height})
                for name, path in SHOTS.items():
                    page.goto(base + path, wait_until="load")
                    file = shots / f"{name}-{width_name}.png"
                    page.screenshot(path=str(file), full_page=True)
                    result.screenshots.append(file)
            browser.close()
    finally:
        server.shutdown()
    return result


def _failed(request) -> str | None:
    """A failed request, or None when it was only cut off by the check moving on to the
    next page (the search worker loading in the background, net::ERR_ABORTED)."""
    failure = request.failure or ""
    if "ERR_ABORTED" in failure:
        return None
    return f"request failed ({failure}): {request.url}"


def _search(page, base: str) -> list[str]:
    """The result links Material's search lists for SEARCH_TERM on the home page."""
    page.goto(base, wait_until="load")
    page.keyboard.press("s")  # Material's shortcut: opens the search and focuses its input
    page.keyboard.type(SEARCH_TERM)
    try:
        page.wait_for_selector(".md-search-result__item a", timeout=15_000)
    except Exception:  # no result within the time: reported as a failed search
        return []
    return page.eval_on_selector_all(
        ".md-search-result__item a", "els => els.map(e => e.getAttribute('href'))"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("site", nargs="?", type=Path, default=REPO / "site")
    parser.add_argument("--shots", type=Path, default=REPO / "outputs" / "docs-check")
    args = parser.parse_args(argv)
    why = missing_requirements()
    if why:
        print(f"docs-check cannot run: {why}", file=sys.stderr)
        return 2
    if not (args.site / "index.html").is_file():
        print(f"docs-check: no built site at {args.site}: run `make docs` first.", file=sys.stderr)
        return 2
    result = check_site(args.site, args.shots)
    print(result.summary())
    return 1 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main())
