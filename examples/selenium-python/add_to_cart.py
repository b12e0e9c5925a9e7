#!/usr/bin/env python3
"""Add item $BATCH_ITERATION to the cart, in the account's own browser.

batch-cli started this browser and logged it in; this script only attaches to it
through Chrome's DevTools endpoint ($BATCH_DEBUGGER_ADDRESS, 127.0.0.1:PORT). Selenium
starts a ChromeDriver of its own for that, but no new browser: the page keeps the
account's cookies, which is how the add below is counted for the right user.

Usage (from a workflow): { exec = ["python3", "add_to_cart.py", "{base_url}"] }
A non-zero exit fails the iteration.
"""

import os
import shutil
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait


def main() -> int:
    base_url = sys.argv[1].rstrip("/")
    item = os.environ["BATCH_ITERATION"]
    options = webdriver.ChromeOptions()
    options.debugger_address = os.environ["BATCH_DEBUGGER_ADDRESS"]
    # An explicit driver path: Selenium would otherwise try to download one.
    chromedriver = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    try:
        driver.get(f"{base_url}/item/{item}")
        driver.find_element(By.CSS_SELECTOR, "#add").click()
        WebDriverWait(driver, 20).until(
            EC.text_to_be_present_in_element((By.CSS_SELECTOR, "#done"), f"added {item}")
        )
        print(f"account {os.environ['BATCH_ACCOUNT_ID']}: selenium added item {item}")
    finally:
        # Ends this script's ChromeDriver only: an attached browser keeps running,
        # and batch-cli goes on using it.
        driver.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
