#!/usr/bin/env python3
"""Opens a page in headless Chromium and reports what a person would see, for the end-to-end tests.

Usage:
  python3 browser_page.py URL --screenshot FILE.png [--timeout SECONDS]

Prints one JSON object to stdout:
  {"url": ..., "title": ..., "text": document.body.innerText,
   "tables": {SECTION HEADING: [[cell text, ...] per row, header row first]},
   "classes": {SECTION HEADING: [[cell class, ...] per row]},
   "resources": [every URL the page loaded besides itself]}
and saves a full-window screenshot. Exits 1 with a message on stderr when the page cannot be opened.
Uses Debian's chromium and chromium-driver (see browser_signin.py); plain http:// on loopback only.
"""

import argparse
import json
import sys
import tempfile

from browser_signin import Failure, chromium_error, start_browser

TABLES = """
const result = {tables: {}, classes: {}};
for (const section of document.querySelectorAll('section')) {
  const heading = section.querySelector('h2');
  const table = section.querySelector('table');
  if (!heading || !table) continue;
  const rows = [...table.querySelectorAll('tr')];
  result.tables[heading.innerText] = rows.map(r => [...r.children].map(c => c.innerText));
  result.classes[heading.innerText] = rows.map(r => [...r.children].map(c => c.className));
}
result.resources = performance.getEntriesByType('resource').map(e => e.name);
return result;
"""


def main():
    parser = argparse.ArgumentParser(description="Report a page as headless Chromium shows it.")
    parser.add_argument("url")
    parser.add_argument("--screenshot", required=True)
    parser.add_argument("--timeout", type=float, default=30)
    arguments = parser.parse_args()
    arguments.host_resolver_rules = ""
    arguments.ignore_certificate_errors = False
    with tempfile.TemporaryDirectory() as home:
        driver = start_browser(arguments, home)
        try:
            driver.set_window_size(1400, 1000)
            driver.get(arguments.url)
            error = chromium_error(driver)
            if error:
                raise Failure(error)
            found = driver.execute_script(TABLES)
            driver.save_screenshot(arguments.screenshot)
            print(json.dumps({
                "url": driver.current_url, "title": driver.title,
                "text": driver.execute_script("return document.body.innerText"),
                **found,
            }))
        except Failure as failure:
            sys.exit(f"browser_page: {failure}")
        finally:
            driver.quit()


if __name__ == "__main__":
    main()
