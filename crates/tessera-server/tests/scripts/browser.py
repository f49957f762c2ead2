"""Drives headless Chromium (Debian's chromium and chromium-driver) over
WebDriver with Selenium, against a real `tessera` process that
tests/browser.rs started.

    browser.py SCENARIO BASE SINK DB SHOTS

SCENARIO is `journey` (Tessera's own pages), `tokens` (the same pages
under --tokens signed with a short --access-ttl) or `course` (the jQuery
fixture pages under --static-dir --fail-as-200). BASE is the node's URL,
SINK the webhook sink's URL (GET lists the codes sent), DB the node's SQLite
file (the journey clears the OTP send throttle there instead of waiting a
minute for it), SHOTS the directory screenshots go to. Every wait is
bounded; a failed check raises, and the exit status says so.
"""

import json
import os
import shutil
import subprocess
import sqlite3
import sys
import tempfile
import time
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = os.environ.get("TESSERA_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("TESSERA_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
WAIT = 15  # seconds, for any one thing to happen
SIZES = [("desktop", 1280, 900), ("mobile", 390, 844)]
PASSWORD = "correct horse battery"

SCENARIO, BASE, SINK, DB, SHOTS = sys.argv[1:6]
PROFILES = []


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def browser(accept_language="zh-CN,zh"):
    """A fresh browser profile (its own cookies) whose Accept-Language and
    navigator.languages are `accept_language` (plain tags: Chromium adds
    the q-values to the header itself)."""
    profile = tempfile.mkdtemp(prefix="tessera-chromium-")
    PROFILES.append(profile)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in [
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--lang=" + accept_language.split(",")[0],
        "--user-data-dir=" + profile,
        "--window-size=1280,900",
    ]:
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"intl.accept_languages": accept_language})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT)
    driver.set_script_timeout(WAIT)
    return driver


def wait(driver, condition, what):
    try:
        return WebDriverWait(driver, WAIT).until(condition)
    except TimeoutException:
        raise AssertionError(f"timed out waiting for {what} at {driver.current_url}: {page_text(driver)!r}")


def page_text(driver):
    try:
        return driver.find_element(By.TAG_NAME, "body").text
    except Exception:  # noqa: BLE001 - only for the failure message
        return "<no body>"


def shot(driver, name):
    """The page at desktop and mobile width, as PNG artefacts."""
    os.makedirs(SHOTS, exist_ok=True)
    for label, width, height in SIZES:
        driver.set_window_size(width, height)
        time.sleep(0.2)
        driver.save_screenshot(os.path.join(SHOTS, f"{name}-{label}.png"))
    driver.set_window_size(*SIZES[0][1:])


def by_id(driver, element_id):
    return wait(driver, EC.presence_of_element_located((By.ID, element_id)), f"#{element_id}")


def fill(driver, element_id, value):
    element = by_id(driver, element_id)
    element.clear()
    element.send_keys(value)


def click(driver, element_id):
    wait(driver, EC.element_to_be_clickable((By.ID, element_id)), f"#{element_id} clickable").click()


def message(driver, text):
    """Waits until the page's message (role=alert) says `text`."""
    wait(driver, EC.text_to_be_present_in_element((By.ID, "msg"), text), f"message {text!r}")
    return driver.find_element(By.ID, "msg").text


def at(driver, path):
    wait(driver, lambda d: d.current_url.split("?")[0] == BASE + path, f"page {path}")


def sent():
    with urllib.request.urlopen(SINK, timeout=WAIT) as r:
        return json.load(r)


def next_code(phone_e164, before):
    """The code sent to `phone_e164` after the sink held `before` messages."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        messages = sent()
        for m in messages[before:]:
            if m["telephone"] == phone_e164:
                return m["code"]
        time.sleep(0.1)
    raise AssertionError(f"no code was sent to {phone_e164}")


def lift_send_throttle():
    """What a minute's wait would do: forget the OTP send counters."""
    with sqlite3.connect(DB, timeout=WAIT) as db:
        db.execute("DELETE FROM rate_limit")


def alert_text(driver):
    wait(driver, EC.alert_is_present(), "an alert")
    alert = driver.switch_to.alert
    text = alert.text
    alert.accept()
    return text


def login_by_password(driver, phone):
    driver.get(BASE + "/ui/login")
    fill(driver, "phone", phone)
    click(driver, "by-password")
    fill(driver, "password", PASSWORD)
    click(driver, "login")
    at(driver, "/ui/account")


def devices(driver):
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#devices li"), "the device list")
    return driver.find_elements(By.CSS_SELECTOR, "#devices li")


def journey():
    phone, e164 = "13900001111", "+8613900001111"
    a = browser()

    # The home page, for a browser, at /.
    a.get(BASE + "/")
    wait(a, EC.title_contains("Tessera"), "the home page")
    assert a.find_element(By.TAG_NAME, "h1").text == "Tessera 用户中心"
    shot(a, "home")

    # Phone -> code -> register; a wrong code first.
    a.find_element(By.LINK_TEXT, "注册").click()
    at(a, "/ui/register")
    shot(a, "register")
    fill(a, "phone", phone)
    before = len(sent())
    click(a, "send-code")
    message(a, "验证码已发送")
    wait(a, lambda d: "秒后可重新发送" in d.find_element(By.ID, "send-code").text, "the resend countdown")
    code = next_code(e164, before)
    wrong = "%06d" % ((int(code) + 1) % 1000000)
    fill(a, "code", wrong)
    fill(a, "name", "张三")
    a.find_element(By.CSS_SELECTOR, "#gender option[value='2']").click()
    fill(a, "age", "30")
    fill(a, "password", PASSWORD)
    click(a, "register")
    assert message(a, "短信验证码不符合") == "短信验证码不符合"
    shot(a, "register-wrong-code")
    fill(a, "code", code)
    click(a, "register")
    at(a, "/ui/login")
    message(a, "注册成功，请登录。")
    assert by_id(a, "phone").get_attribute("value") == phone

    # Log in by password: my account shows the profile and this device.
    fill(a, "password", PASSWORD)
    click(a, "login")
    at(a, "/ui/account")
    wait(a, EC.text_to_be_present_in_element((By.ID, "p-name"), "张三"), "the profile")
    assert by_id(a, "p-phone").text == e164
    assert by_id(a, "p-gender").text == "女"
    listed = devices(a)
    assert len(listed) == 1, [d.text for d in listed]
    assert "本设备" in listed[0].text and "Chrome" in listed[0].text, listed[0].text
    assert "127.0.0.1" in listed[0].text, listed[0].text
    shot(a, "account")

    # Log out.
    click(a, "logout")
    at(a, "/ui/login")
    message(a, "已退出登录。")
    a.get(BASE + "/ui/account")
    at(a, "/ui/login")
    message(a, "请先登录。")

    # Log in by code: the registration's code went out under a minute ago,
    # so the resend is throttled and counts down from Retry-After.
    fill(a, "phone", phone)
    click(a, "by-otp")
    click(a, "send-code")
    message(a, "请求过于频繁")
    countdown = by_id(a, "send-code")
    assert not countdown.is_enabled() and "秒后可重新发送" in countdown.text, countdown.text
    shot(a, "login-throttled")
    lift_send_throttle()
    a.get(BASE + "/ui/login")
    fill(a, "phone", phone)
    click(a, "by-otp")
    shot(a, "login-code")
    before = len(sent())
    click(a, "send-code")
    message(a, "验证码已发送")
    fill(a, "code", next_code(e164, before))
    click(a, "login")
    at(a, "/ui/account")
    assert len(devices(a)) == 1

    # A second browser profile logs in: two devices, one of them this one.
    b = browser()
    login_by_password(b, phone)
    a.refresh()
    wait(a, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#devices li")) == 2, "two devices")
    listed = devices(a)
    assert sum("本设备" in d.text for d in listed) == 1, [d.text for d in listed]
    shot(a, "account-two-devices")
    # End the other one: that profile is logged out on its next action.
    other = next(d for d in listed if "本设备" not in d.text)
    other.find_element(By.CSS_SELECTOR, "button.end").click()
    message(a, "已结束该设备的登录。")
    wait(a, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#devices li")) == 1, "one device")
    b.refresh()
    at(b, "/ui/login")
    message(b, "请先登录。")

    # Log in on b again, then log out everywhere from a: both are out.
    login_by_password(b, phone)
    a.refresh()
    wait(a, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#devices li")) == 2, "two devices again")
    click(a, "logout-everywhere")
    at(a, "/ui/login")
    b.refresh()
    at(b, "/ui/login")
    b.quit()

    # A wrong password shows errMsg; an English browser reads English.
    fill(a, "phone", phone)
    click(a, "by-password")
    fill(a, "password", "not the password")
    click(a, "login")
    assert message(a, "用户手机号或密码不正确") == "用户手机号或密码不正确"
    a.quit()

    en = browser("en-US,en")
    en.get(BASE + "/ui/login")
    wait(en, EC.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Log in"), "English chrome")
    assert en.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
    fill(en, "phone", phone)
    fill(en, "password", "not the password")
    click(en, "login")
    assert message(en, "wrong phone number or password") == "wrong phone number or password"
    shot(en, "login-english")
    en.get(BASE + "/")
    wait(en, EC.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Tessera account"), "English home")
    en.quit()


def course():
    phone, other = "13900002222", "13900003333"
    c = browser()
    c.get(BASE + "/getotp.html")
    fill(c, "telphone", phone)
    before = len(sent())
    click(c, "getotp")
    assert alert_text(c) == "otp已经发送到了您的手机上，注意查收"
    wait(c, EC.title_is("register"), "register.html")
    code = next_code("+86" + phone, before)
    # With --fail-as-200 a failure's alert is exactly errMsg.
    for field, value in [("telphone", phone), ("otpCode", code), ("name", "李四"), ("gender", "1"),
                         ("age", "20"), ("password", "short")]:
        fill(c, field, value)
    click(c, "register")
    assert alert_text(c) == "密码长度必须在8到128个字符之间"
    fill(c, "password", PASSWORD)
    click(c, "register")
    assert alert_text(c) == "注册成功"
    wait(c, EC.title_is("login"), "login.html")
    fill(c, "telphone", phone)
    fill(c, "password", "wrong password")
    click(c, "login")
    assert alert_text(c) == "用户手机号或密码不正确"
    fill(c, "password", PASSWORD)
    click(c, "login")
    assert alert_text(c) == "登录成功"
    assert c.get_cookie("tessera") is not None, "the session cookie is kept"
    # Holding the cookie, the same pages keep working: log in again, and
    # ask for another code (another phone: one code per phone per minute).
    c.get(BASE + "/login.html")
    fill(c, "telphone", phone)
    fill(c, "password", PASSWORD)
    click(c, "login")
    assert alert_text(c) == "登录成功"
    c.get(BASE + "/getotp.html")
    fill(c, "telphone", other)
    before = len(sent())
    click(c, "getotp")
    assert alert_text(c) == "otp已经发送到了您的手机上，注意查收"
    next_code("+86" + other, before)
    c.quit()

    # The same page in an English browser: errMsg in English, as sent.
    en = browser("en-US,en")
    en.get(BASE + "/login.html")
    fill(en, "telphone", phone)
    fill(en, "password", "wrong password")
    click(en, "login")
    assert alert_text(en) == "wrong phone number or password"
    en.quit()


def post(path, body):
    request = urllib.request.Request(BASE + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=WAIT) as r:
        answer = json.load(r)
    assert answer["status"] == "success", answer


def tokens():
    """--tokens signed with a 6 s access token: the cookie lapses (its
    Max-Age is the token's lifetime), the next call answers 401, and the page
    refreshes once and carries on."""
    phone = "13900004444"
    before = len(sent())
    post("/user/getotp", {"telephone": phone})
    code = next_code("+86" + phone, before)
    post("/user/register", {"telephone": phone, "otpCode": code, "name": "王五", "gender": 1, "age": 40,
                            "password": PASSWORD})
    t = browser()
    login_by_password(t, phone)
    wait(t, EC.text_to_be_present_in_element((By.ID, "p-name"), "王五"), "the profile")
    assert t.get_cookie("tessera") is not None
    wait(t, lambda d: d.get_cookie("tessera") is None, "the access token to lapse")
    t.refresh()
    wait(t, EC.text_to_be_present_in_element((By.ID, "p-name"), "王五"), "the profile after a refresh")
    assert t.current_url == BASE + "/ui/account", t.current_url
    assert len(devices(t)) == 1
    assert t.get_cookie("tessera") is not None, "a new access token"
    # Logging out also works on a lapsed token (refresh, then log out).
    wait(t, lambda d: d.get_cookie("tessera") is None, "the access token to lapse again")
    click(t, "logout")
    at(t, "/ui/login")
    message(t, "已退出登录。")
    t.get(BASE + "/ui/account")
    at(t, "/ui/login")
    t.quit()


def outage():
    """On --redis: Redis goes away under a logged-in page; the page says to
    try again (503), never that the user was logged out."""
    phone = "13900005555"
    before = len(sent())
    post("/user/getotp", {"telephone": phone})
    code = next_code("+86" + phone, before)
    post("/user/register", {"telephone": phone, "otpCode": code, "name": "赵六", "gender": 1, "age": 50,
                            "password": PASSWORD})
    o = browser()
    login_by_password(o, phone)
    wait(o, EC.text_to_be_present_in_element((By.ID, "p-name"), "赵六"), "the profile")
    port = os.environ["TESSERA_TEST_REDIS_PORT"]
    subprocess.run(["redis-cli", "-p", port, "shutdown", "nosave"], timeout=WAIT, check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    o.refresh()
    message(o, "服务暂时不可用，请稍后重试。")
    assert o.current_url == BASE + "/ui/account", "still on the account page, not sent to log in"
    shot(o, "account-unavailable")
    o.quit()


try:
    {"journey": journey, "course": course, "tokens": tokens, "outage": outage}[SCENARIO]()
finally:
    for p in PROFILES:
        shutil.rmtree(p, ignore_errors=True)
print(json.dumps({"ok": True, "scenario": SCENARIO}))
