"""A real browser on Tessera's login page: headless Chromium (Debian's chromium and
chromedriver) driven by Selenium.

Arguments: AUTHORIZE_URL SCREENSHOT_DIR. Reads {"username", "password", "totp_seed_b32",
"redirect_prefix"} on stdin. Opens the URL, signs in (the password page, then the OTP page,
with a TOTP code computed here from RFC 6238), saves a screenshot of every page, and prints
[{"final_url": ..., "pages": [{"title", "heading", "prompt", "screenshot"}]}].
"""
import base64
import hashlib
import hmac
import json
import os
import struct
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait


def totp(seed_b32):
    key = base64.b32decode(seed_b32)
    mac = hmac.new(key, struct.pack(">Q", int(time.time() // 30)), hashlib.sha1).digest()
    off = mac[-1] & 0x0F
    code = (struct.unpack(">I", mac[off:off + 4])[0] & 0x7FFFFFFF) % 1_000_000
    return f"{code:06d}"


def main():
    url, shots = sys.argv[1], sys.argv[2]
    steps = json.load(sys.stdin)
    os.makedirs(shots, exist_ok=True)
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=480,800"):
        options.add_argument(arg)
    options.binary_location = "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    pages = []
    try:
        driver.get(url)
        wait = WebDriverWait(driver, 15)

        def page(name):
            wait.until(EC.presence_of_element_located((By.TAG_NAME, "h1")))
            path = os.path.join(shots, f"{len(pages) + 1:02d}-{name}.png")
            driver.save_screenshot(path)
            prompt = driver.find_elements(By.ID, "prompt")
            # The stylesheet loaded (the CSP lets it): the button has its colour.
            button = driver.find_elements(By.TAG_NAME, "button")
            pages.append({
                "title": driver.title,
                "heading": driver.find_element(By.TAG_NAME, "h1").text,
                "prompt": prompt[0].text if prompt else "",
                "button_background": button[0].value_of_css_property("background-color")
                if button else "",
                # A branded page's logo: its width once loaded (-1: no logo).
                "logo_width": driver.execute_script(
                    "const i = document.querySelector('img.logo');"
                    " return i ? i.naturalWidth : -1;"),
                "intro": (driver.find_elements(By.CLASS_NAME, "intro") or [None])[0].text
                if driver.find_elements(By.CLASS_NAME, "intro") else "",
                "screenshot": path,
            })

        page("password")
        driver.find_element(By.ID, "username").send_keys(steps["username"])
        driver.find_element(By.ID, "answer").send_keys(steps["password"])
        driver.find_element(By.TAG_NAME, "button").click()
        wait.until(EC.presence_of_element_located((By.ID, "prompt")))
        page("otp")
        driver.find_element(By.ID, "answer").send_keys(totp(steps["totp_seed_b32"]))
        driver.find_element(By.TAG_NAME, "button").click()
        wait.until(lambda d: d.current_url.startswith(steps["redirect_prefix"]))
        final = driver.current_url
        driver.save_screenshot(os.path.join(shots, f"{len(pages) + 1:02d}-back-at-the-app.png"))
        # Later visits in the same browser (e.g. an SP's page that posts a request across
        # sites): each must end at the app without a sign-in page.
        later = []
        for visit in steps.get("then", []):
            driver.get(visit["url"])
            WebDriverWait(driver, 15).until(
                lambda d: d.current_url.startswith(visit["expect_prefix"]))
            later.append(driver.current_url)
    finally:
        driver.quit()
    print(json.dumps([{"final_url": final, "pages": pages, "later": later}]))


if __name__ == "__main__":
    main()
