#!/usr/bin/env python3
"""Loads the eod dashboard in headless Chromium and checks it the way a trader would: numbers
appear, they change as trades arrive, positions carry their mark source, the pipeline panel
is filled, and the page logs no errors. Saves a screenshot.

    dashboard_check.py URL SCREENSHOT [--timeout SECONDS] [--min-positions N]

Prints one JSON line of what it saw; exits non-zero with the reason when a check fails.
"""
import argparse
import json
import re
import sys
import time

import headless_chromium
from selenium.webdriver.common.by import By


def fail(message):
    print(f"dashboard check failed: {message}", file=sys.stderr)
    sys.exit(1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("screenshot")
    parser.add_argument("--timeout", type=float, default=60)
    parser.add_argument("--min-positions", type=int, default=1)
    args = parser.parse_args()

    driver = headless_chromium.start(window="1500,1000")
    try:
        driver.get(args.url)
        deadline = time.monotonic() + args.timeout

        def text(element_id):
            return driver.find_element(By.ID, element_id).text.strip()

        def messages():
            value = driver.find_element(By.ID, "as-of").get_attribute("data-messages")
            return int(value) if value else None

        def wait_for(what, condition):
            while time.monotonic() < deadline:
                try:
                    if condition():
                        return
                except Exception:  # the page may be mid-render
                    pass
                time.sleep(0.2)
            driver.save_screenshot(args.screenshot)
            fail(f"timed out waiting for {what} (screenshot: {args.screenshot})")

        wait_for("the stream to go live", lambda: text("status") == "live")
        wait_for("firm P&L to appear", lambda: text("firm-total") not in ("", "–"))
        # The page re-renders as events arrive: read it in single scripts, never through
        # element handles that the next render replaces.
        def column(table, n):
            return driver.execute_script(
                f"return [...document.querySelectorAll('#{table} tbody tr td:nth-child({n})')]"
                ".map(td => td.textContent)")

        wait_for(f"{args.min_positions} positions",
                 lambda: int(driver.execute_script("return positions.size")) >= args.min_positions)
        wait_for("position rows", lambda: len(column("positions", 1)) > 0)
        first = {"messages": messages(), "firm_total": text("firm-total"),
                 "positions_shown": text("positions-shown")}
        wait_for("the numbers to change",
                 lambda: messages() > first["messages"] and text("firm-total") != "")
        second = {"messages": messages(), "firm_total": text("firm-total")}
        sources = set(column("positions", 6))
        if not sources & {"official close", "last trade", "mid", "prev close"}:
            fail(f"no mark source shown, saw {sorted(sources)[:5]}")
        # A live run's view time is a clock time (its epochs are microseconds of the Unix
        # clock), not a 16-digit number.
        as_of = text("as-of")
        if not re.search(r"messages · \d\d:\d\d:\d\d\.\d{3} UTC$", as_of):
            fail(f"the view's time is not a clock time: {as_of!r}")
        health = text("health")
        for label in ("messages/s", "messages read", "dead letters"):
            if label not in health:
                fail(f"pipeline panel lacks '{label}': {health!r}")
        traders = column("traders", 1)
        if not traders:
            fail("no trader rows")
        # Clicking a trader narrows the positions table to that trader.
        chosen = driver.execute_script(
            "const row = document.querySelector('#traders tbody tr');"
            "row.click(); return row.firstChild.textContent;")
        wait_for("the trader filter", lambda: set(column("positions", 1)) == {chosen})
        # Time one full render of the positions table at its current size.
        render_ms = driver.execute_script(
            "const t = performance.now(); renderPositions(); return performance.now() - t;")
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        if errors:
            fail(f"browser errors: {errors[:3]}")
        driver.save_screenshot(args.screenshot)
        print(json.dumps({
            "first": first, "second": second,
            "positions": driver.execute_script("return positions.size"),
            "traders": len(traders), "render_ms": round(render_ms, 1),
            "screenshot": args.screenshot,
        }))
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
