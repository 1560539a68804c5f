"""The HTML board in a real headless browser (Debian's Chromium and its driver, through selenium):
sorting by a click on a header, each filter hiding exactly its tables, columns, rows and curves, the
numbers and per-seed hovers equal to the JSON's, and nothing fetched. A missing browser fails the
test (CI installs it, `.ci/run`)."""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path

import pytest
from conftest import row
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from zepad_bench.reports.data import Board, read_board, tasks_of, to_json
from zepad_bench.reports.files import publish
from zepad_bench.reports.html import render_html

E = 1 / 255
SEEDS = (0, 1, 2)
DEFENSES = ("none", "zepad", "trades")
BA = {"none": [90.0, 91.0, 93.0], "zepad": [95.0, 96.0, 96.5], "trades": [85.0, 86.0, 88.0]}
RA = {  # (attack, scenario, ε) → defense → RA per seed; the orders differ from column to column
    ("pap", "semi-black-box", 16 * E): {"none": [30, 40, 50], "zepad": [70, 71, 72], "trades": [60, 62, 64]},
    ("uap", "semi-black-box", 16 * E): {"none": [60, 61, 62], "zepad": [20, 50, 80], "trades": [9, 9, 9]},
    ("noise", "semi-black-box", 16 * E): {
        "none": [80, 80, 80],
        "zepad": [90, 91, 92],
        "trades": [85, 85, 85],
    },
    ("uapgd", "defense-aware", 16 * E): {"none": [55, 56, 57], "zepad": [66, 67, 68], "trades": [75, 74, 73]},
    ("adaptive", "adaptive", 16 * E): {"none": [0, 0.5, 1], "zepad": [10, 12, 14], "trades": [20, 21, 22]},
    ("adaptive", "adaptive", 4 * E): {"none": [5, 6, 7], "zepad": [40, 41, 45], "trades": [38, 39, 40]},
}
FAILED = ("cls", "trades", "uap")  # every seed failed
PENDING = ("cls", "none", "pap", 2)  # one seed not run
OUTDATED = ("cls", "zepad", "adaptive", 16 * E, 0)
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1000",
)
TABLE = """
const table = arguments[0], shown = (el) => el.getClientRects().length > 0;
const cell = (c) => ({text: c.textContent, title: c.title, cls: c.className, shown: shown(c)});
return {headers: [...table.tHead.rows[0].cells].map(cell),
        rows: [...table.tBodies[0].rows].map((r) => ({shown: shown(r), cells: [...r.cells].map(cell)}))};
"""


def toy_rows() -> tuple[list[dict], list[dict]]:
    """Rows of two tasks, three defenses and seeds, three threat models and a control, two budgets; one
    entry failed, one seed pending, one row outdated, one row with branch confidences (a figure)."""
    rows, pending = [], []
    for (attack, scenario, eps), values in RA.items():
        role = "control" if attack == "noise" else "attack"
        for defense in DEFENSES:
            for seed in SEEDS:
                ra = float(values[defense][seed])
                metrics = {"BA": BA[defense][seed], "RA": ra, "ASR": 100 - ra, "head": "retrained"}
                cell = row("cls", defense, attack, seed, metrics, eps=eps, scenario=scenario, role=role)
                det = {"detection_accuracy": 50.0 + seed + ra / 10, "AUROC": 100 - ra / 2, **metrics}
                if (attack, scenario, eps) == ("pap", "semi-black-box", 16 * E):
                    rows.append(row("det", defense, attack, seed, det, eps=eps, scenario=scenario))
                if ("cls", defense, attack, seed) == PENDING:
                    pending.append({k: cell[k] for k in ("victim", "scenario", "attack", "eps", "defense")})
                    pending[-1].update(tuning="digits", task="cls", seed=seed, task_data="digits")
                    continue
                if ("cls", defense, attack) == FAILED:
                    cell.update(status="failed", metrics={}, reason="budget broken", stage="adversarial")
                if ("cls", defense, attack, eps, seed) == OUTDATED:
                    cell["outdated"] = "code changed since it was stored: attack:adaptive"
                rows.append(cell)
    branches = [{"name": "m", "role": "mpae"}, {"name": "b", "role": "bmp"}]
    histogram = {"n": 4, "range": [0.0, 1.0], "counts": [1, 3]}
    rows[0]["config"]["branches"] = branches
    rows[0]["records"] = {f"confidence_{k}:mpae:m": histogram for k in ("clean", "adv")}
    return rows, pending


@pytest.fixture(scope="module")
def board_json(tmp_path_factory) -> Path:
    rows, pending = toy_rows()
    board = Board("toy", "suites/toy.toml", "A <toy> suite.", 16 * E, rows, pending, tasks_of(rows))
    path = tmp_path_factory.mktemp("board") / "toy.json"
    path.write_bytes(to_json(board))
    return path


@pytest.fixture(scope="module")
def page(board_json) -> Path:
    """The HTML board as `zepad-bench leaderboard toy.json` writes it: from the JSON alone."""
    paths = publish(read_board(board_json), board_json.parent / "out")
    assert paths[3].name == "toy.html"
    return paths[3]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, (
        "the HTML board's test needs Chromium and its driver on PATH: apt-get install -y chromium "
        "chromium-driver (as .ci/run does)"
    )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium')}")
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})  # every request the page makes
    session = webdriver.Chrome(service=Service(driver), options=options)
    yield session
    session.quit()


@pytest.fixture
def browse(browser, page):
    browser.get_log("performance")  # from here on: the requests of this page
    browser.get(page.as_uri())
    return browser


def click(browser, element) -> None:
    """A click as a reader makes it: the element scrolled to the middle of the window first (the
    filter bar stays at the top of the window)."""
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.click()


def table(browser, caption: str) -> dict:
    element = browser.find_element(
        By.XPATH, f"//figure[figcaption={json.dumps(caption, ensure_ascii=False)}]//table"
    )
    return browser.execute_script(TABLE, element)


def summary(browser, task: str = "cls") -> dict:
    element = browser.find_element(
        By.XPATH, f"//section[@id='summary']/div[h3={json.dumps(task, ensure_ascii=False)}]//table"
    )
    return browser.execute_script(TABLE, element)


def column(data: dict, header: str) -> int:
    return [h["text"] for h in data["headers"]].index(header)


def defenses(data: dict) -> list[str]:
    """The defenses of the rows shown, top to bottom."""
    return [r["cells"][0]["text"] for r in data["rows"] if r["shown"]]


def ok_values(board_json: Path, task: str, defense: str, metric: str, **where) -> dict[int, float]:
    """Per seed, the JSON's value of ``metric`` for one entry (finished rows only)."""
    rows = json.loads(board_json.read_text())["results"]
    return {
        r["seed"]: r["metrics"][metric]
        for r in rows
        if r["task"] == task
        and r["defense"] == defense
        and r["status"] == "ok"
        and all(r[k] == v for k, v in where.items())
    }


def shown_text(values: dict[int, float]) -> str:
    spread = f" ± {statistics.stdev(values.values()):.2f}" if len(values) > 1 else ""
    return f"{statistics.mean(values.values()):.2f}{spread}"


def test_the_page_is_self_contained_and_fetches_nothing(browse, page):
    sent = [json.loads(entry["message"])["message"] for entry in browse.get_log("performance")]
    requests = [m["params"] for m in sent if m["method"] == "Network.requestWillBeSent"]
    ours = [r["request"]["url"] for r in requests if r.get("documentURL") == page.as_uri()]
    assert ours[0] == page.as_uri() and all(u.startswith("data:") for u in ours[1:]), ours
    assert not [
        r["request"]["url"]
        for r in requests
        if not r["request"]["url"].startswith(("file:", "data:", "chrome:"))
    ]
    assert browse.execute_script("return performance.getEntriesByType('resource').length") == 0
    links = browse.execute_script(
        "return [...document.querySelectorAll('[src], [href]')]"
        ".map((e) => e.getAttribute('src') ?? e.getAttribute('href'))"
    )
    images = [u for u in links if not u.startswith("#")]
    assert images and all(u.startswith("data:image/png;base64,") for u in images)  # the confidence figure
    assert browse.find_elements(By.CSS_SELECTOR, "#curves svg polyline")  # RA against ε, drawn inline
    assert browse.find_element(By.TAG_NAME, "h1").text == "Leaderboard: toy"
    assert "A <toy> suite." in browse.find_element(By.TAG_NAME, "body").text  # escaped, not markup


def test_clicking_a_header_sorts_the_rows_by_the_jsons_values(browse, board_json):
    caption = "cls: RA at ε 16/255"

    def means(attack: str) -> dict[str, float]:
        values = {d: ok_values(board_json, "cls", d, "RA", attack=attack, eps=16 * E) for d in DEFENSES}
        return {d: statistics.mean(v.values()) for d, v in values.items() if v}

    for attack in ("pap", "uap", "uapgd"):
        header = browse.find_element(By.XPATH, f"//figure[figcaption='{caption}']//th[.='{attack}']")
        expected = sorted(means(attack), key=means(attack).get, reverse=True)
        missing = [d for d in DEFENSES if d not in expected]  # failed entries go last
        click(browse, header)
        assert defenses(table(browse, caption)) == expected + missing, attack
        click(browse, header)
        assert defenses(table(browse, caption)) == expected[::-1] + missing, attack
    click(browse, browse.find_element(By.XPATH, f"//figure[figcaption='{caption}']//th[.='defense']"))
    assert defenses(table(browse, caption)) == sorted(DEFENSES)
    # lower is better: ASR sorts best (lowest) first
    asr = "cls: ASR at ε 4/255"
    click(browse, browse.find_element(By.XPATH, f"//figure[figcaption='{asr}']//th[.='adaptive']"))
    values = {d: ok_values(board_json, "cls", d, "ASR", attack="adaptive", eps=4 * E) for d in DEFENSES}
    assert defenses(table(browse, asr)) == sorted(DEFENSES, key=lambda d: statistics.mean(values[d].values()))
    # the summary: BA
    click(browse, browse.find_element(By.XPATH, "//section[@id='summary']/div[h3='cls']//th[.='BA']"))
    assert defenses(summary(browse)) == sorted(DEFENSES, key=lambda d: -statistics.mean(BA[d]))


def test_each_filter_hides_exactly_what_it_should(browse):
    def untick(dimension: str, value: str) -> None:
        click(
            browse,
            browse.find_element(
                By.CSS_SELECTOR, f'fieldset[data-dimension="{dimension}"] input[value="{value}"]'
            ),
        )

    def shown_captions() -> set[str]:
        figures = browse.find_elements(By.CSS_SELECTOR, "section figure.table")
        return {
            f.find_element(By.TAG_NAME, "figcaption").get_attribute("textContent")
            for f in figures
            if f.is_displayed()
        }

    every = shown_captions()
    assert every == {
        "cls: clean",
        *(f"cls: {m} at ε {e}" for m in ("RA", "ASR") for e in ("4/255", "16/255")),
        "det: detection_accuracy at ε 16/255",
        "det: AUROC at ε 16/255",
    }
    curves = browse.find_element(By.CSS_SELECTOR, "#curves svg")
    lines = {g.get_attribute("data-filter"): g for g in curves.find_elements(By.CSS_SELECTOR, "g")}

    untick("defense", "zepad")  # every row of zepad, and its curve, goes; the others stay
    for caption in every:
        assert defenses(table(browse, caption)) == ["none", "trades"], caption
    assert defenses(summary(browse)) == ["trades", "none"]  # ranked by adaptive RA at the headline ε
    assert [g.is_displayed() for g in lines.values()] == [True, False, True]
    untick("defense", "zepad")  # ticked again

    untick("task", "det")
    assert shown_captions() == {c for c in every if c.startswith("cls:")}
    assert not browse.find_element(By.XPATH, "//section[h2='Task det (plugin detection)']").is_displayed()
    untick("task", "det")

    untick("eps", "4/255")
    assert shown_captions() == {c for c in every if "4/255" not in c}
    headers = [h for h in summary(browse)["headers"] if h["shown"]]
    assert [h["text"] for h in headers] == [
        "defense",
        "BA",
        "transfer 16/255",
        "defense-aware 16/255",
        "adaptive 16/255",
        "flags",
    ]
    untick("eps", "4/255")

    untick("scenario", "adaptive")  # its columns go, and tables and curves that hold nothing else
    assert shown_captions() == {c for c in every if "4/255" not in c}
    ra = table(browse, "cls: RA at ε 16/255")
    assert [h["text"] for h in ra["headers"] if h["shown"]] == [
        "defense",
        "noise°",
        "pap",
        "uap",
        "uapgd",
        "worst",
    ]
    assert [h["text"] for h in ra["headers"] if not h["shown"]] == ["adaptive"]
    assert all(not r["cells"][column(ra, "adaptive")]["shown"] for r in ra["rows"])
    shown = [h["text"] for h in summary(browse)["headers"] if h["shown"]]
    assert shown == ["defense", "BA", "transfer 16/255", "defense-aware 16/255", "flags"]
    assert not curves.is_displayed()
    untick("scenario", "adaptive")
    assert shown_captions() == every and curves.is_displayed()


def test_the_numbers_and_hovers_are_the_jsons(browse, board_json):
    ra = table(browse, "cls: RA at ε 16/255")
    checked = 0
    for r in ra["rows"]:
        defense = r["cells"][0]["text"]
        for attack in ("pap", "uap", "noise", "uapgd", "adaptive"):
            cell = r["cells"][column(ra, attack + ("°" if attack == "noise" else ""))]
            values = ok_values(board_json, "cls", defense, "RA", attack=attack, eps=16 * E)
            if not values:
                assert cell["text"] == "failed" and "failed" in cell["cls"].split()
                continue
            assert cell["text"].removeprefix("≈ ").startswith(shown_text(values)), (defense, attack)
            assert cell["title"].splitlines()[: len(values)] == [
                f"seed {s}: {v:.2f}" for s, v in values.items()
            ]
            checked += 1
    assert checked == 14
    # best per column in bold: the highest mean
    pap = column(ra, "pap")
    assert [r["cells"][0]["text"] for r in ra["rows"] if "best" in r["cells"][pap]["cls"].split()] == [
        "zepad"
    ]
    # the summary: BA, and the worst transfer RA per seed (controls left out)
    table_ = summary(browse)
    for r in table_["rows"]:
        defense = r["cells"][0]["text"]
        assert r["cells"][column(table_, "BA")]["text"].removeprefix("≈ ") == shown_text(
            dict(enumerate(BA[defense]))
        )
        per_attack = [
            ok_values(board_json, "cls", defense, "RA", attack=a, eps=16 * E) for a in ("pap", "uap")
        ]
        worst = {s: min(v[s] for v in per_attack if s in v) for s in SEEDS if any(s in v for v in per_attack)}
        cell = r["cells"][column(table_, "transfer 16/255")]
        assert cell["text"].removeprefix("≈ ").startswith(shown_text(worst)), defense
        assert cell["title"].splitlines()[: len(worst)] == [f"seed {s}: {v:.2f}" for s, v in worst.items()]


def test_failed_pending_and_outdated_entries_are_marked(browse):
    ra = table(browse, "cls: RA at ε 16/255")
    cells = {r["cells"][0]["text"]: r["cells"] for r in ra["rows"]}
    assert cells["trades"][column(ra, "uap")]["text"] == "failed"
    pap = cells["none"][column(ra, "pap")]
    assert pap["text"].endswith("(1 pending)") and "1 seed(s) pending" in pap["title"]
    adaptive = cells["zepad"][column(ra, "adaptive")]
    assert adaptive["text"].endswith(" †") and "outdated" in adaptive["cls"].split()
    flags = {r["cells"][0]["text"]: r["cells"][-1]["text"] for r in summary(browse)["rows"]}
    assert "3 failed" in flags["trades"] and "1 pending" in flags["none"] and "† outdated" in flags["zepad"]
    text = browse.find_element(By.ID, "cells").text
    assert "at stage adversarial: budget broken — 3 cell(s)" in text and "Pending cells" in text
    assert "Glossary" in browse.find_element(By.ID, "glossary").text
    assert "suite file: suites/toy.toml" in browse.find_element(By.ID, "provenance").text


def test_the_page_is_a_function_of_the_json(board_json, page):
    board = read_board(board_json)
    figures = {"toy-confidence.png": (page.parent / "toy-confidence.png").read_bytes()}
    assert render_html(board, figures) == page.read_text() == render_html(read_board(board_json), figures)
