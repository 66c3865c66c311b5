"""Loads the validator's dashboard in Debian's chromium (headless, driven by
playwright, no downloaded browser) and reports what a user sees, as JSON:
the node rows with their verdicts, whether the page updated after a round,
how many points the score plot has, and every console error, failed request
or uncaught exception. Writes a full-page screenshot.

usage: check.py URL EXPECTED_ROWS SCREENSHOT.png
"""

import json
import os
import shutil
import sys
import time

from playwright.sync_api import sync_playwright


def chromium_path():
    env = os.environ.get("ATTESTA_CHROMIUM")
    if env:
        return env
    # Debian's launcher script wraps this binary.
    for p in ("/usr/lib/chromium/chromium", shutil.which("chromium") or ""):
        if p and os.path.exists(p):
            return p
    sys.exit("chromium not found: install Debian's `chromium` (or set ATTESTA_CHROMIUM)")


def wait(what, predicate, timeout=30.0):
    """Polls from Python: the page's CSP (no eval) rules out wait_for_function."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.1)
    sys.exit(f"timed out waiting for {what}")


def main():
    url, expected, screenshot = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    problems = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium_path(), headless=True, args=["--no-sandbox"]
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append("uncaught: " + str(e)))
        page.on("requestfailed", lambda r: problems.append("request failed: " + r.url))
        page.goto(url)
        wait(
            f"{expected} node rows",
            lambda: len(page.query_selector_all("#nodes tbody tr")) == expected,
        )
        rows = page.eval_on_selector_all(
            "#nodes tbody tr",
            """rs => rs.map(r => ({
                id: r.dataset.node,
                verdict: r.children[1].className,
                platform: r.children[1].textContent,
                color: getComputedStyle(r.children[1]).color,
            }))""",
        )
        before = int(page.text_content("#round"))
        # Live: the same page shows a later round without a reload.
        wait("a later round", lambda: int(page.text_content("#round")) > before)
        after = int(page.text_content("#round"))
        points = page.eval_on_selector_all(
            "#scores polyline",
            "ls => ls.map(l => l.getAttribute('points').trim().split(/\\s+/).length)",
        )
        gateway = page.text_content("#gateway")
        page.screenshot(path=screenshot, full_page=True)
        browser.close()
    print(
        json.dumps(
            {
                "rows": rows,
                "round_before": before,
                "round_after": after,
                "score_points": points,
                "gateway": gateway,
                "problems": problems,
            }
        )
    )


if __name__ == "__main__":
    main()
