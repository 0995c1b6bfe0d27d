"""The web console in a real headless Chromium (Selenium) against a real `tidal up`.

One platform and one browser for the module. Screenshots of every page go to the folder that
`shots` names and prints (under pytest's tmp dir, or TIDAL_CONSOLE_SHOTS). Needs
/usr/bin/chromium and /usr/bin/chromedriver (`.ci/run` installs them); skipped with the reason
otherwise.
"""

from __future__ import annotations

import json
import math
import os
import time
import urllib.request
from pathlib import Path

import pytest

from tests.integration.harness import FAST_AUTOSCALER, Platform, hello_service, host, wait_until

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip(
        f"needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)",
        allow_module_level=True,
    )

from selenium.common.exceptions import (  # noqa: E402
    NoSuchElementException,
    StaleElementReferenceException,
)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

WAIT_S = 15
POOLS = [  # priced, so that the Cost page has figures (as examples/tidal.yaml)
    {
        "name": "reserved",
        "kind": "reserved",
        "capacity": {"replicas": 1},
        "price": {"replicaSecond": 0.0002},
    },
    {"name": "elastic", "kind": "elastic", "price": {"replicaSecond": 0.0005}},
    {
        "name": "gpu",
        "kind": "reserved",
        "capacity": {"nvidia.com/gpu": ["0", "1"]},  # declared devices: no GPU is touched
        "price": {"replicaSecond": 0.0002, "gpuSecond": 0.0008},
    },
]


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory):
    p = Platform(
        tmp_path_factory.mktemp("console"), {"autoscaler": FAST_AUTOSCALER, "pools": POOLS}
    )
    p.start()
    p.apply(hello_service("hello"))
    p.wait_ready("hello")
    p.apply(
        {
            "apiVersion": "serving.knative.dev/v1beta1",
            "kind": "DomainMapping",
            "metadata": {"name": "api.example.org"},
            "spec": {
                "ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "hello"}
            },
        }
    )
    # a second revision, so that there is something to roll back to
    p.apply(hello_service("hello", env={"GREETING": "v2"}))
    wait_until(lambda: _revision_of(p) == "hello-00002", 30, "hello-00002 to take traffic")
    # a day of a daily pattern, so that the day window and the forecast have something (the
    # import writes a row at a time: seconds per thousand minutes, hence a day, not a week)
    now = int(time.time()) // 60 * 60
    minutes = list(range(now - 86400, now - 600, 60))
    values = [round(2 + 1.5 * math.sin(2 * math.pi * t / 86400), 3) for t in minutes]
    request = urllib.request.Request(
        f"{p.admin}/apis/tidal.dev/v1/namespaces/default/services/hello/history",
        json.dumps({"timestamps": minutes, "values": values}).encode(),
        {"Authorization": f"Bearer {p.token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        assert json.load(response)["minutes"] == len(minutes)
    # three replicas of one GPU each, two GPUs: one stays pending, with the placer's reason
    gpu = hello_service("gpu", {"autoscaling.knative.dev/min-scale": "3"})
    gpu["spec"]["template"]["spec"]["containers"][0]["resources"] = {
        "limits": {"nvidia.com/gpu": 1}
    }
    p.apply(gpu)
    yield p
    p.stop()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    named = os.environ.get("TIDAL_CONSOLE_SHOTS")  # a folder that outlives pytest's tmp dirs
    folder = Path(named) if named else tmp_path_factory.mktemp("console-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    print(f"console screenshots in {folder}")
    return folder


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1440,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: Selenium Manager is not used and downloads nothing.
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(WAIT_S)
    yield driver
    driver.quit()


def _revision_of(platform: Platform) -> str | None:
    status, headers, _ = platform.request(host("hello"))
    return headers.get("X-Tidal-Revision") if status == 200 else None


def _wait(driver, condition, timeout: float = WAIT_S):
    """`condition` once true. Live pages re-render as updates arrive, so an element found on
    one poll may be gone by the next read: a condition that finds its elements afresh is asked
    again when one went stale."""
    ignored = (NoSuchElementException, StaleElementReferenceException)
    return WebDriverWait(driver, timeout, ignored_exceptions=ignored).until(condition)


def _text(driver, css: str) -> str:
    """The text of the element at `css` as the page shows it now (found afresh)."""
    return _wait(driver, lambda d: d.find_element(By.CSS_SELECTOR, css).text)


def _click(driver, css: str) -> None:
    """Click the element at `css` once it is clickable, found afresh (as `_text`)."""

    def clicked(d) -> bool:
        element = ec.element_to_be_clickable((By.CSS_SELECTOR, css))(d)
        if element:
            element.click()
        return bool(element)

    _wait(driver, clicked)


def _shot(driver, path: Path) -> None:
    """A screenshot of the whole page (the window grows to the page's height for it)."""
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1440, max(1000, min(int(height) + 120, 4000)))
    driver.save_screenshot(str(path))
    driver.set_window_size(1440, 1000)


def _errors(driver) -> list[dict]:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_unauthenticated_pages_redirect_to_login(platform, browser, shots):
    for path in ("/", "/console/", "/console/pools", "/console/services/default/hello"):
        browser.get(platform.admin + path)
        assert browser.current_url == f"{platform.admin}/console/login", path
    _shot(browser, shots / "login.png")
    # the data behind the pages needs the token or the session cookie
    status, _ = platform.api("GET", "/apis/tidal.dev/v1/console/services", token=False)
    assert status == 401
    assert _errors(browser) == []


def test_login_keeps_token_in_httponly_strict_cookie(platform, browser):
    browser.get(platform.admin + "/console/login")
    browser.find_element(By.ID, "token").send_keys("not-the-token")
    browser.find_element(By.ID, "submit").click()
    _wait(browser, ec.text_to_be_present_in_element((By.ID, "error"), "wrong token"))
    # the only console error so far is the refused log-in itself
    errors = _errors(browser)
    assert errors and all("/console/session" in e["message"] for e in errors), errors
    browser.find_element(By.ID, "token").clear()
    browser.find_element(By.ID, "token").send_keys(platform.token)
    browser.find_element(By.ID, "submit").click()
    _wait(browser, ec.url_to_be(f"{platform.admin}/console/"))
    (cookie,) = browser.get_cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert browser.execute_script("return document.cookie") == ""  # scripts cannot read it


def test_services_table_shows_the_service(platform, browser, shots):
    browser.get(platform.admin + "/console/")
    row = "tr[data-service=hello]"
    _wait(browser, ec.presence_of_element_located((By.CSS_SELECTOR, row)))
    _wait(browser, lambda d: d.find_element(By.ID, "live").text == "live")
    text = _text(browser, row)
    assert "http://hello.default.example.com" in text and "True" in text
    split = _wait(
        browser,
        lambda d: d.find_element(
            By.CSS_SELECTOR, f"{row} .split span[data-revision]"
        ).get_attribute("data-revision"),
    )
    assert split == "hello-00002"
    _shot(browser, shots / "services.png")


def test_a_gateway_request_shows_in_the_live_chart(platform, browser, shots):
    browser.get(platform.admin + "/console/services/default/hello")
    line = "#chart-rps path[data-series='requests/s']"
    _wait(browser, ec.presence_of_element_located((By.CSS_SELECTOR, line)))
    _wait(browser, lambda d: d.find_element(By.ID, "live").text == "live")
    # The page may hold earlier requests (the fixture's); wait until they have left the chart's
    # newest points, then one request must show within a few seconds.
    for _ in range(5):
        assert platform.request(host("hello"))[0] == 200
    seen = _wait(
        browser,
        lambda d: float(d.find_element(By.CSS_SELECTOR, line).get_attribute("data-max")) > 0,
        timeout=8,
    )
    assert seen
    _wait(
        browser, ec.presence_of_element_located((By.CSS_SELECTOR, "#revisions tr[data-revision]"))
    )
    _wait(browser, ec.presence_of_element_located((By.CSS_SELECTOR, "#chart-plan svg")))
    domain = "#service-header a[data-domain='http://api.example.org']"
    assert _text(browser, domain) == "http://api.example.org"  # its DomainMapping
    _shot(browser, shots / "service.png")


def test_day_window_draws_the_minute_history(platform, browser):
    browser.get(platform.admin + "/console/services/default/hello")
    _click(browser, "[data-window=day]")
    line = "#chart-concurrency path[data-series='in flight']"
    _wait(
        browser,
        lambda d: float(d.find_element(By.CSS_SELECTOR, line).get_attribute("data-max")) > 3,
    )
    assert _errors(browser) == []


def test_rollback_from_the_console_changes_the_next_requests_revision(platform, browser, shots):
    assert _revision_of(platform) == "hello-00002"
    browser.get(platform.admin + "/console/services/default/hello")
    _click(browser, "[data-rollback=hello-00001]")
    dialog = _wait(browser, ec.visibility_of_element_located((By.ID, "confirm")))
    assert "hello-00001 100%" in dialog.text
    _shot(browser, shots / "rollback-confirm.png")
    browser.find_element(By.ID, "confirm-ok").click()
    _wait(browser, ec.text_to_be_present_in_element((By.ID, "traffic-message"), "traffic set"))
    assert _revision_of(platform) == "hello-00001"
    assert platform.get_json("routes", "hello")["status"]["traffic"][0]["revisionName"] == (
        "hello-00001"
    )
    _shot(browser, shots / "service-rolled-back.png")


def test_a_split_the_api_refuses_shows_its_message_and_changes_nothing(platform, browser):
    browser.get(platform.admin + "/console/services/default/hello")
    for revision in ("hello-00001", "hello-00002"):
        box = _wait(
            browser,
            ec.presence_of_element_located((By.CSS_SELECTOR, f"input[data-revision={revision}]")),
        )
        box.clear()
        box.send_keys("30")
    browser.find_element(By.ID, "traffic-apply").click()
    _wait(browser, ec.visibility_of_element_located((By.ID, "confirm")))
    browser.find_element(By.ID, "confirm-ok").click()
    message = _wait(
        browser, ec.visibility_of_element_located((By.CSS_SELECTOR, "#traffic-message.error"))
    )
    assert "100" in message.text  # the API's own message: the percentages must add up to 100
    assert _revision_of(platform) == "hello-00001"
    errors = _errors(browser)  # the refused apply is logged by the browser; nothing else
    assert errors and all("/apis/tidal.dev/v1/apply" in e["message"] for e in errors), errors


def test_the_cookie_never_authenticates_a_cross_site_change(platform):
    cookie = {"Cookie": f"tidal_console={platform.token}"}
    body = {"items": []}
    own = {"Origin": platform.admin}
    apply = "/apis/tidal.dev/v1/apply"
    assert platform.api("GET", "/apis/tidal.dev/v1/info", headers=cookie, token=False)[0] == 200
    # no Origin (not a browser page of ours), another origin, a form's content type: refused
    assert platform.api("POST", apply, body, headers=cookie, token=False)[0] == 401
    foreign = {**cookie, "Origin": "http://evil.example"}
    assert platform.api("POST", apply, body, headers=foreign, token=False)[0] == 403
    form = {**cookie, **own, "Content-Type": "application/x-www-form-urlencoded"}
    assert platform.api("POST", apply, b"items=", headers=form, token=False)[0] == 415
    assert platform.api("POST", apply, body, headers={**cookie, **own}, token=False)[0] == 200
    wrong = {"Cookie": "tidal_console=wrong", **own}
    assert platform.api("POST", apply, body, headers=wrong, token=False)[0] == 401


def test_the_open_console_paths_reach_nothing_else(platform):
    for path in (
        "/console/../apis/tidal.dev/v1/info",
        "/console/%2e%2e/apis/tidal.dev/v1/info",
        "/console/static/../../apis/tidal.dev/v1/info",
        "/console/static/%2e%2e/routes.py",
    ):
        status, body = platform.api("GET", path, token=False)
        assert status == 404 and b"dataDir" not in body, path


def test_pools_and_cost_pages(platform, browser, shots):
    browser.get(platform.admin + "/console/pools")
    _wait(
        browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "[data-pool=gpu] .chip.held")) == 2
    )
    pool = _text(browser, "[data-pool=gpu]")
    assert "GPU 0: gpu (gpu-00001-" in pool and "GPU 1: gpu (gpu-00001-" in pool
    _wait(browser, ec.text_to_be_present_in_element((By.ID, "pending"), "nvidia.com/gpu"))
    _shot(browser, shots / "pools.png")
    browser.get(platform.admin + "/console/cost")
    _wait(browser, ec.presence_of_element_located((By.CSS_SELECTOR, "#cost-table table")))
    _wait(browser, lambda d: "hello" in d.find_element(By.ID, "cost-table").text)
    assert "total" in _text(browser, "#cost-table table").lower()
    _shot(browser, shots / "cost.png")


def test_no_console_errors_on_any_page(platform, browser):
    browser.get_log("browser")  # what came before was checked where it happened
    for path in ("/console/", "/console/services/default/hello", "/console/pools", "/console/cost"):
        browser.get(platform.admin + path)
        _wait(browser, lambda d: d.find_element(By.ID, "live").text == "live")
    assert _errors(browser) == []


def test_simulator_report_page(browser, shots):
    from click.testing import CliRunner

    from tidal.sim.cli import simulate

    manifest = shots / "service.json"
    manifest.write_text(json.dumps(hello_service("svc")))
    report = shots / "report"
    args = ["--trace", "synthetic", "--days", "0.1", "--rps", "1", "-f", str(manifest)]
    out = CliRunner().invoke(
        simulate, [*args, "--policy", "kpa", "--policy", "peak", "--report", str(report)]
    )
    assert out.exit_code == 0, out.output
    browser.get((report / "report.html").as_uri())
    rows = browser.find_elements(By.CSS_SELECTOR, "table tbody tr")
    assert {r.text.split()[0] for r in rows} >= {"kpa", "peak"}
    images = browser.find_elements(By.TAG_NAME, "img")
    assert len(images) >= 3
    assert all(browser.execute_script("return arguments[0].naturalWidth", i) > 0 for i in images)
    _shot(browser, shots / "report.png")
    assert _errors(browser) == []


def test_tidal_console_prints_the_url(platform):
    out = platform.cli("console", "--no-browser").stdout
    assert f"{platform.admin}/console/" in out
