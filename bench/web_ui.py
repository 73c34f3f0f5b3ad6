"""The web UI, built (`make ui`) and in the system's Chromium against `bifrost serve` (SQLite, embedded NATS,
local backend, one pre-started runner):

1. weight: what the first page downloads (index.html and the files it names), raw and gzipped, and the
   largest parts loaded later, when first needed;
2. a form's Run: from pressing Run on a form's page to its workflow's first log line shown on the execution
   page the browser goes to, measured in the page; p50 / p95 over 20 runs;
3. a log of 100,000 lines: how long the execution page takes to show all of them from the moment it is
   opened, the longest the browser's main thread was busy at once meanwhile, and the frames while the log is
   scrolled from end to start.
"""

from __future__ import annotations

import gzip
import re
import statistics
import tempfile
import time
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

from bench._report import measured
from bench.executions import percentile
from bifrost_devtools.browser import UI_BUILT, UI_DIR, Bifrost, open_browser, serving, sign_in

LOG_LINES = 100_000
SCROLL_FRAMES = 240
FORM_RUNS = 20

WORKSPACE = {
    "bench_flows.py": '''
import logging

from bifrost import workflow

logger = logging.getLogger(__name__)


@workflow
def greet(name: str) -> str:
    """Say hello."""
    logger.info("hello %s", name)
    return f"hello {name}"


@workflow
def chatter(lines: int = 100) -> dict[str, int]:
    """Log many lines."""
    for number in range(1, lines + 1):
        logger.info("line %d of %d", number, lines)
    return {"lines": lines}
'''
}


def _gzipped(data: bytes) -> int:
    return len(gzip.compress(data, compresslevel=6))


def weight() -> None:
    index = UI_BUILT.read_bytes()
    named = re.findall(rb'(?:src|href)="/(assets/[^"]+)"', index)
    files = [("index.html", index)] + [(name.decode(), (UI_DIR / name.decode()).read_bytes()) for name in named]
    for name, data in files:
        print(f"  first page  {name:<42} {len(data) / 1024:8.1f} KiB  gzip {_gzipped(data) / 1024:7.1f} KiB")
    raw = sum(len(data) for _, data in files)
    packed = sum(_gzipped(data) for _, data in files)
    print(f"  first page  {'total':<42} {raw / 1024:8.1f} KiB  gzip {packed / 1024:7.1f} KiB")
    first = {name for name, _ in files}
    later = sorted(
        (path for path in (UI_DIR / "assets").glob("*.js") if f"assets/{path.name}" not in first),
        key=lambda path: path.stat().st_size,
        reverse=True,
    )
    for path in later[:3]:
        data = path.read_bytes()
        print(f"  on demand   {path.name:<42} {len(data) / 1024:8.1f} KiB  gzip {_gzipped(data) / 1024:7.1f} KiB")


# The moment Run is pressed (before the page handles the click), and the moment the first log line is in the
# page: the single-page app goes from the form to the execution page without reloading, so both are on one clock.
_WATCH_RUN = """() => {
    window.benchPressed = null;
    window.benchFirstLog = null;
    document.addEventListener("click", (event) => {
        if (event.target.closest("button[type=submit]")) window.benchPressed = performance.now();
    }, {capture: true});
    new MutationObserver(() => {
        if (window.benchFirstLog === null && document.querySelector(".log-text")) {
            window.benchFirstLog = performance.now();
        }
    }).observe(document.body, {childList: true, subtree: true});
}"""


def _one_form_run(page: Page, form_id: str, run: int) -> float:
    page.goto(f"/forms/{form_id}")
    page.get_by_label("Name").fill(f"run {run}")
    page.evaluate(_WATCH_RUN)
    page.get_by_role("button", name="Run").click()
    page.wait_for_function("() => window.benchFirstLog !== null", timeout=120_000)
    shown: float = page.evaluate("() => window.benchFirstLog - window.benchPressed")
    return shown


def form_runs(bifrost: Bifrost, page: Page) -> None:
    made = bifrost.admin.post("/api/forms", json={"name": "Greeting", "workflow": "greet"})
    if made.status_code != 201:
        raise RuntimeError(f"the form was not made: {made.status_code} {made.text[:300]}")
    form_id = made.json()["id"]
    _one_form_run(page, form_id, 0)  # the first run loads the form's and the execution page's code
    durations = [_one_form_run(page, form_id, run) for run in range(1, FORM_RUNS + 1)]
    figure = measured(
        f"p50 {statistics.median(durations):.0f} ms, p95 {percentile(durations, 95):.0f} ms, "
        f"best {min(durations):.0f} ms"
    )
    print(f"  form Run pressed to first log line shown, {FORM_RUNS} runs: {figure}")


_WATCH_LONG_TASKS = """() => {
    window.longestTask = 0;
    new PerformanceObserver((list) => {
        for (const entry of list.getEntries()) window.longestTask = Math.max(window.longestTask, entry.duration);
    }).observe({type: "longtask", buffered: true});
}"""

_SCROLL_UP = """async (frames) => {
    const log = document.querySelector(".log");
    const step = log.scrollHeight / frames;
    const times = [];
    let last = performance.now();
    for (let frame = 0; frame < frames; frame++) {
        log.scrollTop = log.scrollHeight - log.clientHeight - step * frame;
        await new Promise(requestAnimationFrame);
        const now = performance.now();
        times.push(now - last);
        last = now;
    }
    times.sort((a, b) => a - b);
    return {median: times[Math.floor(times.length / 2)], p95: times[Math.floor(times.length * 0.95)],
            worst: times[times.length - 1], rows: log.querySelectorAll(".log-row").length};
}"""


def long_log(bifrost: Bifrost, page: Page) -> None:
    started = bifrost.admin.post(
        "/api/workflows/chatter/execute", json={"parameters": {"lines": LOG_LINES}}, params={"sync": False}
    )
    execution_id = started.json()["execution_id"]
    bifrost.finished(execution_id)
    page.add_init_script(f"({_WATCH_LONG_TASKS})()")
    opened = time.perf_counter()
    page.goto(f"/executions/{execution_id}")
    page.wait_for_selector(f'.log[data-lines="{LOG_LINES}"]', timeout=300_000)
    shown = time.perf_counter() - opened
    longest = page.evaluate("() => window.longestTask")
    frames = page.evaluate(_SCROLL_UP, SCROLL_FRAMES)
    figure = measured(f"{shown:.2f} s after opening the page; longest busy spell {longest:.0f} ms")
    print(f"  {LOG_LINES} log lines shown: {figure}")
    figure = measured(
        f"median frame {frames['median']:.1f} ms, p95 {frames['p95']:.1f} ms, worst {frames['worst']:.1f} ms; "
        f"{frames['rows']} rows in the page"
    )
    print(f"  scrolling them end to start over {SCROLL_FRAMES} frames: {figure}")


def main() -> None:
    if not UI_BUILT.is_file():
        raise RuntimeError("the web UI is not built: run `make ui`")
    weight()
    with (
        tempfile.TemporaryDirectory(prefix="bifrost-bench-ui-") as tmp,
        serving(Path(tmp), WORKSPACE) as bifrost,
        sync_playwright() as playwright,
    ):
        context = open_browser(playwright, bifrost, Path(tmp) / "profile")
        try:
            page = context.new_page()
            sign_in(page)
            form_runs(bifrost, page)
            long_log(bifrost, context.new_page())
        finally:
            context.close()


if __name__ == "__main__":
    main()
