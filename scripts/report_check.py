#!/usr/bin/env python3
"""Opens an HTML page with uPlot charts (the `eod check` report, or the dashboard) in headless
Chromium and checks that every chart drew data: each chart canvas has plotted pixels, the page
logs no errors. Saves a screenshot.

    report_check.py URL SCREENSHOT [--charts N] [--rows N] [--contains TEXT]... [--timeout S]

--charts: how many uPlot charts must be drawn; --rows: how many verdict rows the table must
have (0: not checked); --contains: text the page must show (repeatable). Prints one JSON line of what it saw; exits non-zero with the reason.
"""
import argparse
import json
import sys
import time

import headless_chromium

# Counts the pixels of each uPlot canvas that are neither transparent nor white: axes and grid
# alone draw a few thousand, so the plotted series are measured as what lies inside the plot
# area (uPlot's "over" box) and is drawn in a series colour (not grey).
MEASURE = """
return Array.from(document.querySelectorAll('.uplot')).map(chart => {
  const canvas = chart.querySelector('canvas');
  const over = chart.querySelector('.u-over');
  const ctx = canvas.getContext('2d');
  const scale = canvas.width / canvas.clientWidth;
  const left = Math.round(over.offsetLeft * scale), top = Math.round(over.offsetTop * scale);
  const width = Math.round(over.clientWidth * scale), height = Math.round(over.clientHeight * scale);
  const data = ctx.getImageData(left, top, width, height).data;
  let coloured = 0;
  for (let i = 0; i < data.length; i += 4) {
    const [r, g, b, a] = [data[i], data[i + 1], data[i + 2], data[i + 3]];
    const grey = Math.abs(r - g) < 16 && Math.abs(g - b) < 16;
    if (a > 0 && !grey) coloured++;
  }
  return { title: chart.parentElement.querySelector('h2, h3')?.textContent || '', coloured };
});
"""


def fail(message):
    print(f"report check failed: {message}", file=sys.stderr)
    sys.exit(1)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("screenshot")
    parser.add_argument("--charts", type=int, default=3)
    parser.add_argument("--rows", type=int, default=0)
    parser.add_argument("--contains", action="append", default=[])
    parser.add_argument("--timeout", type=float, default=30)
    args = parser.parse_args()

    driver = headless_chromium.start(window="1300,1100")
    try:
        driver.get(args.url)
        deadline = time.monotonic() + args.timeout
        charts, text = [], ""
        while time.monotonic() < deadline:
            charts = driver.execute_script(MEASURE)
            text = driver.execute_script("return document.body.innerText;")
            if (len(charts) >= args.charts and all(c["coloured"] > 50 for c in charts)
                    and all(t in text for t in args.contains)):
                break
            time.sleep(0.5)
        rows = driver.execute_script(
            "return document.querySelectorAll('#verdicts tbody tr').length;")
        errors = [entry["message"] for entry in driver.get_log("browser")
                  if entry["level"] == "SEVERE"]
        driver.save_screenshot(args.screenshot)
        seen = {"charts": charts, "rows": rows, "errors": errors}
        print(json.dumps(seen))
        if errors:
            fail(f"the page logged errors: {errors}")
        if len(charts) < args.charts:
            fail(f"{len(charts)} charts drawn, {args.charts} expected")
        empty = [c["title"] for c in charts if c["coloured"] <= 50]
        if empty:
            fail(f"charts without data: {empty}")
        missing = [t for t in args.contains if t not in text]
        if missing:
            fail(f"the page does not show {missing}")
        if args.rows and rows != args.rows:
            fail(f"{rows} verdict rows, {args.rows} expected")
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
