#!/usr/bin/env python3
"""Signs in through the test OpenID provider (oidc_provider.py) with headless Chromium, for the
end-to-end tests.

Usage:
  python3 browser_signin.py URL --sub SUB [--host-resolver-rules "MAP *.localhost 127.0.0.1"]
                            [--ca-file CA.pem | --ignore-certificate-errors] [--deny] [--wait-text TEXT]
                            [--timeout SECONDS]

Opens URL, expects to be redirected to the provider's sign-in form, enters SUB and presses
"Authorize" (or "Deny" with --deny), follows the redirects back, and prints one JSON object to stdout:
  {"url": FINAL_URL, "title": ..., "text": document.body.innerText,
   "cookies": [{"name", "value", "domain", "path", "secure", "httpOnly", "sameSite"}, ...]}
(cookies visible to the final page). Exits 1 with a message on stderr if a step fails or the whole
run takes longer than --timeout (default 30 s); the JSON is still printed when a page was reached.

--ca-file trusts that CA certificate in a throwaway NSS database (needs `certutil`, Debian package
libnss3-tools). Chromium resolves only names matched by --host-resolver-rules, localhost and IP
literals: every other name fails, so nothing leaves the machine. Uses Debian's chromium and
chromium-driver; Selenium Manager is never run.
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

os.environ["SE_OFFLINE"] = "true"

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

CHROMIUM = "/usr/lib/chromium/chromium"  # the binary itself: /usr/bin/chromium is a wrapper script
CHROMEDRIVER = "/usr/bin/chromedriver"
SIGN_IN_FIELD = (By.CSS_SELECTOR, "input[name=sub]")


class Failure(Exception):
    pass


def hard_timeout(signum, frame):
    raise Failure("hard timeout: the browser stopped answering")


def parse_arguments():
    parser = argparse.ArgumentParser(description="Sign in through the test OpenID provider with headless Chromium.")
    parser.add_argument("url", help="page to open; it must redirect to the provider's sign-in form")
    parser.add_argument("--sub", required=True, help="the user (subject) to sign in as")
    parser.add_argument("--host-resolver-rules", default="", help='Chromium host rules, e.g. "MAP *.localhost 127.0.0.1"')
    trust = parser.add_mutually_exclusive_group()
    trust.add_argument("--ca-file", help="PEM CA certificate to trust for HTTPS")
    trust.add_argument("--ignore-certificate-errors", action="store_true", help="accept any HTTPS certificate")
    parser.add_argument("--deny", action="store_true", help='press "Deny" instead of "Authorize"')
    parser.add_argument("--wait-text", help="after signing in, wait until the page text contains this")
    parser.add_argument("--timeout", type=float, default=30, help="limit for the whole run in seconds")
    return parser.parse_args()


def trust_ca(home, ca_file):
    """Chromium on Linux trusts the CAs in $HOME/.pki/nssdb."""
    database = os.path.join(home, ".pki", "nssdb")
    os.makedirs(database)
    for command in (["certutil", "-d", f"sql:{database}", "-N", "--empty-password"],
                    ["certutil", "-d", f"sql:{database}", "-A", "-n", "sallyport-test-ca", "-t", "C,,", "-i", ca_file]):
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise Failure(f"{' '.join(command)} failed: {result.stderr.strip()}")


def start_browser(arguments, home):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    rules = ", ".join(rule for rule in [arguments.host_resolver_rules, "MAP * ~NOTFOUND",
                                           "EXCLUDE localhost", "EXCLUDE 127.*", "EXCLUDE ::1"] if rule)
    for flag in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 f"--user-data-dir={home}/profile", f"--host-resolver-rules={rules}",
                 "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-extensions", "--disable-domain-reliability",
                 "--disable-features=Translate,OptimizationHints,MediaRouter,DialMediaRouteProvider",
                 "--window-size=1024,768", "--lang=en-US"]:
        options.add_argument(flag)
    if arguments.ignore_certificate_errors:
        options.add_argument("--ignore-certificate-errors")
    service = Service(CHROMEDRIVER, env={**os.environ, "HOME": home})
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(arguments.timeout)
    return driver


def chromium_error(driver):
    """The error code if Chromium shows its own error page (connection or certificate failure)."""
    if driver.current_url.startswith("chrome-error://") or driver.execute_script(
            "return !!document.querySelector('#main-frame-error, body#body.ssl')"):
        code = re.search(r"\b(?:NET::)?ERR_[A-Z_]+", driver.execute_script("return document.body.innerText"))
        return "Chromium error page: " + (code.group(0) if code else "unknown error")
    return None


def provider_error(driver):
    """The provider's error answer (a JSON error or an "Error: ..." page), if the page is one."""
    text = driver.execute_script("return document.body ? document.body.innerText : ''").strip()
    if re.match(r'\{\s*"error"', text) or text.startswith("Error: "):
        return "error answer: " + " ".join(text.split())[:300]
    return None


def wait_until(driver, deadline, what, condition):
    while True:
        try:
            if condition():
                return
            error = chromium_error(driver) or provider_error(driver)
        except WebDriverException:
            error = None  # the page is changing under us
        if error:
            raise Failure(f"{error} (while waiting for {what})")
        if time.monotonic() > deadline:
            raise Failure(f"timed out waiting for {what}")
        time.sleep(0.1)


def sign_in(driver, arguments, deadline):
    driver.get(arguments.url)
    wait_until(driver, deadline, "the provider's sign-in form", lambda: driver.find_elements(*SIGN_IN_FIELD))
    form_url = driver.current_url
    if arguments.deny:
        driver.find_element(By.CSS_SELECTOR, "button[name=action][value=deny]").click()
    else:
        driver.find_element(*SIGN_IN_FIELD).send_keys(arguments.sub)
        driver.find_element(By.XPATH, "//input[@name='sub']/ancestor::form//button[@type='submit']").click()
    wait_until(driver, deadline, "the redirect back from the provider",
               lambda: driver.current_url != form_url
               and driver.execute_script("return document.readyState") == "complete")
    if arguments.wait_text:
        wait_until(driver, deadline, f"page text {arguments.wait_text!r}",
                   lambda: arguments.wait_text in driver.execute_script("return document.body.innerText"))


def page_report(driver):
    cookies = [{key: cookie.get(key) for key in ("name", "value", "domain", "path", "secure", "httpOnly", "sameSite")}
               for cookie in driver.get_cookies()]
    return {
        "url": driver.current_url,
        "title": driver.title,
        "text": driver.execute_script("return document.body ? document.body.innerText : ''"),
        "cookies": cookies,
    }


def main():
    arguments = parse_arguments()
    deadline = time.monotonic() + arguments.timeout
    signal.signal(signal.SIGALRM, hard_timeout)
    signal.alarm(int(arguments.timeout) + 15)  # in case a WebDriver call itself hangs
    driver = None
    with tempfile.TemporaryDirectory(prefix="browser-signin-") as home:
        try:
            if arguments.ca_file:
                trust_ca(home, arguments.ca_file)
            driver = start_browser(arguments, home)
            try:
                sign_in(driver, arguments, deadline)
            finally:
                try:
                    print(json.dumps(page_report(driver)), flush=True)
                except WebDriverException:
                    pass
            error = chromium_error(driver)
            if error:
                raise Failure(error)
        except (Failure, WebDriverException) as error:
            message = error.msg if isinstance(error, WebDriverException) and error.msg else str(error)
            message = message.strip().splitlines()[0] if message.strip() else type(error).__name__
            try:
                url = driver.current_url if driver else "(no browser)"
            except WebDriverException:
                url = "(browser gone)"
            sys.exit(f"browser_signin: {message} (at {url})")
        finally:
            if driver:
                driver.quit()


if __name__ == "__main__":
    main()
