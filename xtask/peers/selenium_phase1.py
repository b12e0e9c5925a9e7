"""`cargo xtask bench`'s `selenium-phase1` row: the old Python tool's Phase 1, replicated.

One thread per account, all started at once; each creates its browser under one
global lock with a fixed 2.5 s sleep inside it (Selenium's `webdriver.Chrome`,
Debian's ChromeDriver and full Chromium), then runs the demo workflow's step 1 with
explicit waits: log in, then Q x (goto /item/{i}, click #add, wait until #done
contains "added {i}").

Usage: python selenium_phase1.py BASE_URL N Q PROFILES CHROMIUM CHROMEDRIVER
Accounts user-1/pass-1 ... user-N/pass-N (the bench's scratch project).

Prints one `peer-summary {json}` line at the end (iterations done and failed, when the
last browser became ready, this process's peak RSS) and exits 1 when anything failed,
with each error on stderr. Every driver is quit (its ChromeDriver and browser reaped)
before it exits.
"""

import json
import os
import sys
import threading
import time
import traceback

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

SWITCHES = [
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--headless=new",
]
CREATION_PAUSE = 2.5  # seconds, inside the lock: Phase 1's pacing
WAIT = 60  # seconds, each explicit wait


def main() -> int:
    base_url, n, q, profiles, chromium, chromedriver = sys.argv[1:7]
    base_url = base_url.rstrip("/")
    n, q = int(n), int(q)
    creation = threading.Lock()
    state = threading.Lock()
    ready: list[float] = []
    done: dict[int, int] = {}
    errors: list[str] = []

    def account(i: int) -> None:
        driver = None
        try:
            with creation:
                time.sleep(CREATION_PAUSE)
                options = webdriver.ChromeOptions()
                options.binary_location = chromium
                for s in SWITCHES:
                    options.add_argument(s)
                if os.geteuid() == 0:
                    options.add_argument("--no-sandbox")
                options.add_argument(f"--user-data-dir={profiles}/browser-{i}")
                driver = webdriver.Chrome(
                    options=options, service=Service(executable_path=chromedriver)
                )
            with state:
                ready.append(time.time())
            wait = WebDriverWait(driver, WAIT)
            css = By.CSS_SELECTOR
            driver.get(f"{base_url}/login")
            driver.find_element(css, "#username").send_keys(f"user-{i}")
            driver.find_element(css, "#password").send_keys(f"pass-{i}")
            driver.find_element(css, "#submit").click()
            wait.until(EC.presence_of_element_located((css, "#welcome")))
            for it in range(1, q + 1):
                driver.get(f"{base_url}/item/{it}")
                driver.find_element(css, "#add").click()
                wait.until(EC.text_to_be_present_in_element((css, "#done"), f"added {it}"))
                with state:
                    done[i] = done.get(i, 0) + 1
        except Exception:
            with state:
                errors.append(f"account {i}: {traceback.format_exc()}")
        finally:
            if driver is not None:
                try:
                    driver.quit()
                except Exception:
                    with state:
                        errors.append(f"account {i}: quit: {traceback.format_exc()}")

    threads = [threading.Thread(target=account, args=(i,)) for i in range(1, n + 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    for e in errors:
        print(e, file=sys.stderr)
    with open("/proc/self/status") as f:
        hwm = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
    ok = sum(done.values())
    print(
        "peer-summary "
        + json.dumps(
            {
                "peer": "selenium-phase1",
                "accounts": n,
                "iterations_ok": ok,
                "iterations_failed": n * q - ok,
                "last_ready_ms": round(max(ready) * 1000) if ready else None,
                "vmhwm_kib": hwm,
            }
        ),
        flush=True,
    )
    return 0 if ok == n * q and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
