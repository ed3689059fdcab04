"""Open every page of the built book in a real browser and check what a reader would see.

    python tools/check_browser.py _build/html --screenshot _build/screenshots

The built site is served on 127.0.0.1 (a free port, under a sub-path as on GitHub Pages, so a
link that assumes the site sits at the server root fails here too) and Debian's chromium is driven
headless through Playwright's Python API (no browser download). For every page in _toc.yml:

- the page answers HTTP 200 and no file it loads from the site answers an error;
- every <img> in the article has loaded (naturalWidth > 0); a notebook page shows at least one
  image, and at least as many as its executed copy (_build/jupyter_execute/...) has image outputs
  in cells that are not removed;
- where the page loads MathJax: MathJax.startup.promise resolves, every math element is typeset,
  no <mjx-merror> is left, no undefined macro is shown in red, and no raw TeX ($$, \\(, \\[, \\begin{...}) remains in the article text
  outside code;
- the console shows no error coming from the site's own files, and no script raises;
- nothing is requested from any host but the local server (such requests are blocked and listed).

A full-page screenshot of one notebook page (the MLP chapter by default) is saved into the
screenshot folder, in the light theme and, for checking figures, in the dark theme too.
Prints one line per page; exits 1 listing every failure.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import os
import re
import shutil
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "/site/"  # the book is served under a sub-path, like https://<org>.github.io/<repo>/
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
DEFAULT_SCREENSHOT_PAGE = "book/01_foundations/02_mlp_fashion_mnist"
IMAGE_MIME_TYPES = ("image/png", "image/jpeg", "image/svg+xml", "image/gif")
REMOVED_OUTPUT_TAGS = {"remove-cell", "remove-output"}
# Console errors known to be harmless, each with its cause. Keep this list short and specific.
KNOWN_CONSOLE_ERRORS = [
    # Sphinx < 8.2 writes inline scripts added after builder init twice (sphinx-doc/sphinx#13402,
    # fixed in 8.2; Jupyter Book 1 uses Sphinx 7), so sphinx-thebe's `const THEBE_JS_URL = ...`
    # is declared twice. The first declaration works; the book does not use Thebe.
    re.compile(r"Identifier 'THEBE_JS_URL' has already been declared"),
]

# Run in the page: everything the checks need from the rendered article, in one round trip.
INSPECT_JS = r"""
async () => {
  const article = document.querySelector("article.bd-article") || document.querySelector("main")
                  || document.body;
  const imgs = Array.from(article.querySelectorAll("img"));
  for (const img of imgs) img.loading = "eager";
  await Promise.all(imgs.map(img => img.complete ? null : new Promise(done => {
    img.addEventListener("load", done); img.addEventListener("error", done);
    setTimeout(done, 10000);
  })));
  const broken = imgs.filter(img => !(img.naturalWidth > 0))
                     .map(img => img.getAttribute("src") || "(no src)");
  const outputImgs = article.querySelectorAll(".cell_output img, .output img").length;
  const mathElements = Array.from(article.querySelectorAll(".math"));
  const untypeset = mathElements.filter(el => !el.querySelector("mjx-container")).length;
  const merrors = Array.from(document.querySelectorAll("mjx-merror"))
      .map(el => el.getAttribute("data-mjx-error") || el.textContent.trim());
  // MathJax's noundefined extension typesets an unknown macro (e.g. \bm) as red text, not as an
  // error: find it in the assistive MathML that MathJax adds next to each formula.
  const undefinedMacros = Array.from(document.querySelectorAll('mjx-assistive-mml mtext[mathcolor="red"]'))
      .map(el => el.textContent.trim()).filter(text => text.startsWith("\\"));
  const clone = article.cloneNode(true);
  clone.querySelectorAll("pre, code, .highlight, mjx-container, script, style, textarea")
       .forEach(el => el.remove());
  return {
    title: document.title,
    images: imgs.length, broken, outputImgs,
    math: mathElements.length, untypeset, merrors, undefinedMacros,
    text: clone.textContent,
  };
}
"""
RAW_TEX_PATTERNS = [
    (re.compile(r"\$\$"), "$$"),
    (re.compile(r"\\\(|\\\)"), "\\( \\)"),
    (re.compile(r"\\\[|\\\]"), "\\[ \\]"),
    (re.compile(r"\\begin\{"), "\\begin{"),
    (re.compile(r"\$[^$\n]*\\[A-Za-z]+[^$\n]*\$"), "$...\\command...$"),
]


@dataclass
class Page:
    docname: str  # as in _toc.yml, without suffix
    notebook: Path | None  # the source notebook, if the page is one

    @property
    def html(self) -> str:
        return self.docname + ".html"


@dataclass
class Result:
    page: Page
    failures: list[str] = field(default_factory=list)
    summary: str = ""


def toc_pages(toc_path: Path) -> list[Page]:
    """The pages of _toc.yml in reading order (root, then every file/glob entry, depth first)."""
    import yaml

    toc = yaml.safe_load(toc_path.read_text(encoding="utf-8"))
    source_dir = toc_path.parent
    names: list[str] = [str(toc["root"])]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                names.append(str(entry["file"]))
            elif "glob" in entry:
                matches = sorted(p for p in source_dir.glob(entry["glob"] + ".*")
                                 if p.suffix in (".md", ".ipynb", ".rst"))
                names.extend(str(p.relative_to(source_dir).with_suffix("")) for p in matches)
            for key in ("parts", "chapters", "sections"):
                walk(entry.get(key))

    walk(toc.get("parts"))
    walk(toc.get("chapters"))
    walk(toc.get("sections"))
    pages = []
    for name in dict.fromkeys(n.removesuffix(".md").removesuffix(".ipynb") for n in names):
        notebook = source_dir / (name + ".ipynb")
        pages.append(Page(name, notebook if notebook.is_file() else None))
    return pages


def expected_output_images(executed: Path) -> int | None:
    """Image outputs of the executed notebook that the HTML shows (None: no executed copy)."""
    if not executed.is_file():
        return None
    nb = json.loads(executed.read_text(encoding="utf-8"))
    count = 0
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        if REMOVED_OUTPUT_TAGS & set(cell.get("metadata", {}).get("tags", [])):
            continue
        for output in cell.get("outputs", []):
            if any(mime in output.get("data", {}) for mime in IMAGE_MIME_TYPES):
                count += 1
    return count


def serve(directory: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve ``directory`` under PREFIX on 127.0.0.1 and a free port; return server and base URL."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def translate_path(self, path: str) -> str:
            path = urllib.parse.urlsplit(path).path
            if not path.startswith(PREFIX):
                return str(directory / "__outside_the_site__")  # 404
            return super().translate_path("/" + path[len(PREFIX):])

        def log_message(self, format, *args):  # noqa: A002 - quiet
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}{PREFIX}"


def find_chromium(explicit: str | None) -> str:
    for candidate in ([explicit] if explicit else []) + [os.environ.get("CHROMIUM", "")] + list(
            CHROMIUM_CANDIDATES):
        if candidate and (Path(candidate).is_file() or shutil.which(candidate)):
            return shutil.which(candidate) or candidate
    sys.exit("no chromium found: install Debian's chromium, or pass --chromium PATH "
             "(or set CHROMIUM)")


def check_page(context, base: str, page: Page, build_dir: Path, timeout_s: float) -> Result:
    result = Result(page)
    fail = result.failures.append
    console_errors: list[str] = []
    local_errors: list[str] = []
    tab = context.new_page()

    def on_console(message):
        if message.type != "error":
            return
        url = (message.location or {}).get("url", "")
        if any(known.search(message.text) for known in KNOWN_CONSOLE_ERRORS):
            return
        if url.startswith(base) or not url:
            console_errors.append(f"{message.text} ({url.removeprefix(base) or 'inline'})")

    def on_response(response):
        if response.url.startswith(base) and response.status >= 400:
            local_errors.append(f"{response.status} {response.url.removeprefix(base)}")

    def on_page_error(error):
        if not any(known.search(str(error)) for known in KNOWN_CONSOLE_ERRORS):
            console_errors.append(f"uncaught: {error}")

    tab.on("console", on_console)
    tab.on("pageerror", on_page_error)
    tab.on("response", on_response)
    start = time.perf_counter()
    response = tab.goto(base + page.html, wait_until="load", timeout=timeout_s * 1000)
    status = response.status if response else 0
    if status != 200:
        fail(f"HTTP {status}")

    loads_mathjax = tab.evaluate(
        "() => Array.from(document.scripts).some(s => /mathjax/i.test(s.src))")
    if loads_mathjax:
        try:
            # MathJax starts in a second or two; a script that failed to load should not cost a
            # full page timeout per page.
            tab.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise",
                                  timeout=min(timeout_s, 20) * 1000)
            tab.evaluate("() => MathJax.startup.promise.then(() => true)")
        except Exception as error:  # noqa: BLE001 - report, go on with the other checks
            fail(f"MathJax did not finish: {str(error).splitlines()[0]}")
    info = tab.evaluate(INSPECT_JS)

    if info["broken"]:
        fail(f"{len(info['broken'])} image(s) not loaded: {', '.join(info['broken'][:5])}")
    expected = None
    if page.notebook is not None:
        expected = expected_output_images(build_dir.parent / "jupyter_execute" / (page.docname + ".ipynb"))
        if info["images"] == 0:
            fail("notebook page without any image (every chapter has at least one plot)")
        if expected is not None and info["outputImgs"] < expected:
            fail(f"{info['outputImgs']} output images shown, the executed notebook has {expected}")
    if info["math"] and not loads_mathjax:
        fail(f"{info['math']} math elements but MathJax is not loaded")
    if info["untypeset"]:
        fail(f"{info['untypeset']} of {info['math']} math elements not typeset")
    if info["merrors"]:
        fail(f"MathJax errors: {'; '.join(info['merrors'][:5])}")
    if info["undefinedMacros"]:
        fail(f"undefined TeX macros (shown in red): {', '.join(sorted(set(info['undefinedMacros'])))}")
    for pattern, name in RAW_TEX_PATTERNS:
        match = pattern.search(info["text"])
        if match:
            snippet = info["text"][max(0, match.start() - 40):match.end() + 40].replace("\n", " ")
            fail(f"raw TeX {name} in the text: ...{snippet.strip()}...")
    if console_errors:
        fail(f"console errors: {'; '.join(console_errors[:5])}")
    if local_errors:
        fail(f"site files not served: {'; '.join(local_errors[:5])}")

    images = f"images {info['images']}" + (f" (outputs {info['outputImgs']}/{expected})"
                                           if expected is not None else "")
    result.summary = (f"HTTP {status}  {images}  math {info['math'] - info['untypeset']}/{info['math']}"
                      f"{' MathJax' if loads_mathjax else ''}  console errors {len(console_errors)}"
                      f"  {time.perf_counter() - start:.1f} s")
    tab.close()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("build_dir", type=Path, help="the built HTML, e.g. _build/html")
    parser.add_argument("--screenshot", type=Path, metavar="OUT_DIR",
                        help="save full-page screenshots of --screenshot-page here")
    parser.add_argument("--screenshot-page", default=DEFAULT_SCREENSHOT_PAGE,
                        help=f"toc entry to photograph (default {DEFAULT_SCREENSHOT_PAGE})")
    parser.add_argument("--toc", type=Path, default=ROOT / "_toc.yml")
    parser.add_argument("--chromium", help="browser executable (default: Debian's /usr/bin/chromium)")
    parser.add_argument("--timeout", type=float, default=60, help="seconds per page load / MathJax")
    args = parser.parse_args(argv)

    build_dir = args.build_dir.resolve()
    if not (build_dir / "index.html").is_file():
        sys.exit(f"{build_dir} has no index.html: build the book first (make book)")
    pages = toc_pages(args.toc)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sys.exit("the Python package playwright is missing: pip install playwright "
                 "(no browser download needed; Debian's chromium is used)")

    server, base = serve(build_dir)
    failures: list[str] = []
    blocked: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=find_chromium(args.chromium),
                                             headless=True, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme="light",
                                      service_workers="block")

        def route(request_route):
            url = request_route.request.url
            if url.startswith(base):
                request_route.continue_()
            else:
                blocked.append(url)
                request_route.abort()

        context.route("**/*", route)
        print(f"Checking {len(pages)} pages of {build_dir} at {base}")
        for page in pages:
            blocked_before = len(blocked)
            try:
                result = check_page(context, base, page, build_dir, args.timeout)
            except Exception as error:  # noqa: BLE001 - one broken page must not hide the others
                result = Result(page, [f"check crashed: {str(error).splitlines()[0]}"], "crashed")
            for url in dict.fromkeys(blocked[blocked_before:]):
                result.failures.append(f"request to a non-local host: {url}")
            print(f"{'FAIL' if result.failures else 'ok  '}  {page.html:<55} {result.summary}")
            for failure in result.failures:
                print(f"        - {failure}")
                failures.append(f"{page.html}: {failure}")

        # The site's entry point must lead to the root page (Jupyter Book writes a redirect).
        tab = context.new_page()
        tab.goto(base + "index.html", wait_until="load")
        tab.wait_for_url(re.compile(re.escape(base + pages[0].html)), timeout=args.timeout * 1000)
        tab.close()

        if args.screenshot:
            names = {p.docname for p in pages}
            if args.screenshot_page not in names:
                failures.append(f"screenshot page {args.screenshot_page} is not in {args.toc.name}")
            else:
                args.screenshot.mkdir(parents=True, exist_ok=True)
                stem = Path(args.screenshot_page).name
                for scheme in ("light", "dark"):
                    shot_context = browser.new_context(viewport={"width": 1280, "height": 900},
                                                       color_scheme=scheme, service_workers="block")
                    shot_context.route("**/*", route)
                    tab = shot_context.new_page()
                    tab.goto(base + args.screenshot_page + ".html", wait_until="load")
                    tab.evaluate("() => window.MathJax?.startup?.promise")
                    # pydata-sphinx-theme follows the colour scheme in "auto" mode; make it explicit.
                    tab.evaluate(f"() => document.documentElement.dataset.theme = '{scheme}'")
                    suffix = "" if scheme == "light" else "-dark"
                    out = args.screenshot / f"{stem}{suffix}.png"
                    tab.screenshot(path=str(out), full_page=True)
                    print(f"screenshot ({scheme}): {out}")
                    shot_context.close()
        browser.close()
    server.shutdown()

    if failures:
        print(f"\n{len(failures)} failure(s):", file=sys.stderr)
        for failure in failures:
            print(f"  {failure}", file=sys.stderr)
        return 1
    print(f"All {len(pages)} pages passed.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
