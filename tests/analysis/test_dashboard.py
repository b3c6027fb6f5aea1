"""``rksearch dashboard``: errors, the API, a real headless browser, and reading beside a writer."""
from __future__ import annotations

import json
import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
from study_factory import make_study

from rksearch.cli import main
from rksearch.analysis.dashboard import dashboard
from rksearch.core.errors import RKSearchError
from rksearch.analysis.pareto import front
from rksearch.analysis.report import write_report
from rksearch.analysis.study import load_study

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
TESTS = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    return make_study(tmp_path_factory.mktemp("dash"), "demo", n=16)


@pytest.fixture
def study(built, tmp_path) -> Path:
    return Path(shutil.copytree(built, tmp_path / "demo"))


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=60) as r:
        assert r.status == 200
        return json.load(r)


@contextmanager
def served(study: Path, *args: str):
    """``rksearch dashboard`` as a real process on a free port; yields the URL it prints."""
    p = subprocess.Popen([sys.executable, "-m", "rksearch", "dashboard", str(study), "--port", "0", *args],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in p.stdout], daemon=True).start()
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no URL printed; stderr: {p.stderr.read() if p.poll() is not None else ''}")
            if line.startswith("open http"):
                yield line.split()[1]
                break
    finally:
        p.terminate()
        p.wait(timeout=30)


def test_serves_the_study(study) -> None:
    board = dashboard(study, port=0)
    board.start()
    try:
        listed = _get(f"{board.base_url}/api/studies")["study_summaries"]
        assert [s["study_name"] for s in listed] == ["demo"]
        detail = _get(f"{board.base_url}/api/studies/{board.study_id}")
        assert len(detail["trials"]) == 21
        assert board.url.endswith(f"/dashboard/studies/{board.study_id}") and board.wal
    finally:
        board.stop()


def test_port_in_use(study, capsys) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(SystemExit) as e:
            main(["dashboard", str(study), "--port", str(port)])
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert f"--port: port {port} on 127.0.0.1 is already in use; pick another with --port" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("kw, needle", [
    ({"host": "203.0.113.7"}, "--host: cannot listen on 203.0.113.7:0"),
])
def test_bad_host(study, kw, needle) -> None:
    with pytest.raises(RKSearchError, match=needle):
        dashboard(study, port=0, **kw)


def test_not_a_study(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["dashboard", str(tmp_path), "--port", "0"])
    assert e.value.code == 2 and "not a study folder: no optuna.db" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing created: no optuna.db conjured up by a reader


WRITER = textwrap.dedent("""
    import random, sys, time
    sys.path.insert(0, {tests!r})
    import optuna
    from optuna.trial import TrialState
    from study_factory import random_spec, storage, trial_for
    from pathlib import Path
    db = Path({db!r})
    study = optuna.load_study(study_name="demo", storage=storage(db))
    rng = random.Random(1)
    for i in range({n}):
        study.add_trial(trial_for(random_spec(rng), i, TrialState.COMPLETE, ("accuracy", "flops"), rng))
        time.sleep(0.3)  # a search commits now and then; outlast the dashboard's 2 s trial cache
    print("wrote", {n})
""")


@pytest.mark.slow  # a writer process committing 15 trials 0.3 s apart while the dashboard polls
def test_reading_never_fails_the_writer(study) -> None:
    """A search process commits trials while the dashboard keeps reading the same SQLite study."""
    n = 15
    board = dashboard(study, port=0)
    board.start()
    api = f"{board.base_url}/api/studies/{board.study_id}"
    seen, loaded, errors = [], [], []
    try:
        writer = subprocess.Popen([sys.executable, "-c", WRITER.format(tests=str(TESTS), db=str(study / "optuna.db"), n=n)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while writer.poll() is None:
            try:
                seen.append(len(_get(api)["trials"]))
                loaded.append(len(load_study(study).trials))  # rksearch's own read-only reader, too
            except Exception as e:  # noqa: BLE001 (any failed read is what this test looks for)
                errors.append(repr(e))
            time.sleep(0.05)  # a browser polls; leave the writer some CPU on a small machine
        out, err = writer.communicate()
        deadline = time.monotonic() + 30  # optuna-dashboard caches the trial list for 2 s
        while (final := len(_get(api)["trials"])) != 21 + n and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        board.stop()
    assert writer.returncode == 0, err
    assert out.strip() == f"wrote {n}" and "locked" not in err
    assert not errors
    assert final == 21 + n
    assert len(set(seen)) >= 2 and len(set(loaded)) >= 2, (seen, loaded)  # reads really overlapped the writes
    assert len(load_study(study).trials) == 21 + n


def _browser():
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} / {CHROMEDRIVER} missing: .ci/install-browser installs them")
        pytest.skip("no chromium + chromedriver (run .ci/install-browser)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1100"):
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='rksearch-chromium-')}")
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)


@pytest.mark.slow
def test_in_a_real_browser(study) -> None:
    """The page loads, the study is listed, its trials and the same Pareto front are visible."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    s = load_study(study)
    members = set(front(s).members["number"])
    driver = _browser()
    try:
        with served(study) as url:
            base = url.split("/dashboard/")[0]
            wait = WebDriverWait(driver, 90, poll_frequency=0.5)
            text = lambda: driver.find_element(By.TAG_NAME, "body").text  # noqa: E731
            driver.get(f"{base}/dashboard")
            wait.until(lambda d: "demo" in text() and "MAXIMIZE, MINIMIZE" in text())
            driver.get(url)
            points = "#graph-pareto-front .scatterlayer .point"
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, points)) == len(s.completed))
            wait.until(lambda d: "Best Trials" in text())
            best = text().split("Best Trials", 1)[1]
            assert set(int(n) for n in re.findall(r"^Trial (\d+)$", best, re.M)) == members
            driver.get(f"{url}/trials")
            wait.until(lambda d: f"{len(s.trials)} Trials" in text())
            assert "Pruned" in text() and "Fail" in text()
    finally:
        driver.quit()


@pytest.mark.slow
def test_the_run_report_is_never_a_blank_page(study) -> None:
    """pareto.html loads plotly.js from beside the study folders: offline (this machine, CI) the
    plots draw. Without that copy it falls back to the CDN, and where that is out of reach too
    the page says how to write it with plotly.js beside it. Either way the reader sees something."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    write_report(study)
    driver = _browser()
    try:
        notice = lambda: driver.find_element(By.ID, "rksearch-offline").is_displayed()  # noqa: E731
        drawn = lambda: bool(driver.find_elements(By.CSS_SELECTOR, ".scatterlayer .point"))  # noqa: E731
        for copy in (True, False):
            if not copy:
                (study.parent / "plotly.min.js").unlink()
            driver.get((study / "pareto.html").as_uri())
            wait = WebDriverWait(driver, 30, poll_frequency=0.5)
            wait.until(lambda d: d.execute_script("return document.readyState") == "complete" and (notice() or drawn()))
            assert notice() != drawn()
            if copy:
                assert drawn()  # offline, from the copy
            elif notice():
                assert f"rksearch pareto {study} --html demo.html" in driver.find_element(By.TAG_NAME, "body").text
    finally:
        driver.quit()
