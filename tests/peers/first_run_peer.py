"""A new user's first sign-in, in headless Chromium (Debian's chromium and chromedriver) driven
by Selenium: the server's home page, its link to the account pages, the login page, and the
list of sessions it ends on.

Arguments: BASE_URL SCREENSHOT_DIR. Reads [{"lang", "username", "pin", "totp_seed_b32"}] on
stdin: one browser per entry, with that language. Each opens BASE_URL, follows the account
link, types the user name and the PIN followed by a TOTP code (RFC 6238, computed here), and
prints [{"pages": [{"name", "url", "title", "heading", "texts", "label", "hint",
"screenshot"}], "final_url", "user_shown"}].
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


def text_of(driver, by, what):
    found = driver.find_elements(by, what)
    return found[0].text if found else ""


def run(base, shots, step):
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=480,800", f"--lang={step['lang']}"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"intl.accept_languages": step["lang"]})
    options.binary_location = "/usr/bin/chromium"
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    pages = []
    wait = WebDriverWait(driver, 15)

    def page(name):
        wait.until(EC.presence_of_element_located((By.TAG_NAME, "h1")))
        path = os.path.join(shots, f"{step['lang']}-{len(pages) + 1:02d}-{name}.png")
        driver.save_screenshot(path)
        labels = driver.find_elements(By.CSS_SELECTOR, "label[for=answer]")
        pages.append({
            "name": name,
            "url": driver.current_url,
            "title": driver.title,
            "heading": driver.find_element(By.TAG_NAME, "h1").text,
            "texts": [p.text for p in driver.find_elements(By.TAG_NAME, "p")],
            "label": labels[0].text if labels else "",
            "hint": text_of(driver, By.ID, "answer-hint"),
            "screenshot": path,
        })

    try:
        driver.get(base + "/")
        page("home")
        driver.find_element(By.ID, "account").click()
        wait.until(EC.presence_of_element_located((By.ID, "username")))
        page("sign-in")
        driver.find_element(By.ID, "username").send_keys(step["username"])
        driver.find_element(By.ID, "answer").send_keys(step["pin"] + totp(step["totp_seed_b32"]))
        driver.find_element(By.TAG_NAME, "button").click()
        wait.until(EC.presence_of_element_located((By.ID, "sign-out")))
        page("sessions")
        final = driver.current_url
        user_shown = text_of(driver, By.ID, "user")
    finally:
        driver.quit()
    return {"pages": pages, "final_url": final, "user_shown": user_shown}


def main():
    base, shots = sys.argv[1], sys.argv[2]
    steps = json.load(sys.stdin)
    os.makedirs(shots, exist_ok=True)
    print(json.dumps([run(base, shots, s) for s in steps]))


if __name__ == "__main__":
    main()
