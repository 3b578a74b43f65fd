"""Every notebook with a panel (01 on) in a real JupyterLab, in a real browser, as a learner.

nbval runs the cells but renders nothing. Here each notebook is opened from JupyterLab's file
browser in headless Chromium with default settings, and run with Run > Run All Cells, clean-up
cell included. Then, as a learner who scrolls back would, the test uses every live panel on the
page: "Start", "Trigger event" three times, "Stop". It checks that the counters change in the
page (so the widget updates from the kernel's threads reach the browser), that each panel's plot
rendered, that no cell shows an error, and that no exercise check says it passed (Run All must
never run a solution). It leaves a screenshot per notebook in results/screenshots/, closes the
notebook with its kernel, and opens the next in the same tab.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from browser.conftest import Budget, Chromium, Lab  # which also defines the fixtures

pytestmark = pytest.mark.browser

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = sorted(p.name for p in NOTEBOOK_DIR.glob("0[1-9]_*.ipynb"))  # every one with a panel
# Two lanes of notebooks, classes TestLaneA and TestLaneB, each with a JupyterLab of its own that
# its last test stops. `make test-browser` runs them side by side (pytest-xdist, -n 2 --dist
# loadscope, which keeps a class in one worker, in order): a notebook's kernel mostly waits on
# held polls and timers, so two fit on 2 cores. Without xdist, the lanes run one after the other.
# The lanes are balanced by the seconds each notebook took here, one lane beside the other (a
# fresh clone, 2026-12-07): lane b is 01 (39 s, JupyterLab's first load included), 03 (28), 05
# (38) and 06 (72), 177 s; lane a, the rest, 167 s. A new notebook goes to lane a until it is
# measured.
LANE_B = {"01", "03", "05", "06"}
LANE = {name: "b" if name[:2] in LANE_B else "a" for name in NOTEBOOKS}
RUN_TIMEOUT_S = 240.0  # one notebook's cells, headless; they take 27-84 s here
CLICKS = 3
TRIGGER = re.compile(r"^\s*(Trigger event|Trigger 1)\s*$")  # Panel's, and ComparePanel's
MAX_SHOT_HEIGHT = 15_000  # pixels; Chromium's limit for one capture is about 16k

# The notebook on screen (JupyterLab hides, rather than removes, inactive tabs).
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"

CELL_STATES_JS = """(panel) => [...document.querySelectorAll(panel + ' .jp-Notebook-cell')].map(
    (cell) => ({
        code: cell.classList.contains('jp-CodeCell'),
        prompt: (cell.querySelector('.jp-InputPrompt') || {textContent: ''}).textContent.trim(),
        stderr: [...cell.querySelectorAll(
            '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
            .map((output) => output.textContent),
    }))"""

# From the "Trigger event" button up to the Panel's box: the first ancestor that also holds
# the counters table and the plot.
PANEL_ROOT_JS = """(button) => {
    let node = button;
    while (node && !(node.textContent.includes('events triggered') && node.querySelector('img')))
        node = node.parentElement;
    return node;
}"""

_ERROR = re.compile(r"Traceback \(most recent call last\)|^\w*(Error|Exception)\b", re.M)


class LabTab:
    """One browser tab on a lane's JupyterLab, kept from notebook to notebook as a learner keeps
    theirs: the first notebook loads JupyterLab, each next one is opened from its file browser
    (loading JupyterLab again took 5-8 s per notebook here). After a failure the tab is
    closed, and the next notebook gets a fresh one."""

    def __init__(self, browser: Chromium) -> None:
        self.browser = browser
        self.page: Any = None
        self.page_errors: list[str] = []  # JavaScript errors, for as long as the tab is open
        self.requests: list[str] = []  # every URL the tab asked for

    def get(self) -> Any:
        if self.page is None:
            self.page_errors.clear()
            self.requests.clear()
            page = self.browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("pageerror", lambda exc: self.page_errors.append(str(exc)))
            page.on("request", lambda request: self.requests.append(request.url))
            self.page = page
        return self.page

    def close(self) -> None:
        if self.page is not None:
            self.page.close()
            self.page = None


class NotebookPage:
    """The JupyterLab page with one notebook open, and what the test does to it."""

    def __init__(self, tab: LabTab, lab: Lab, name: str, budget: Budget) -> None:
        self.tab, self.lab, self.name, self.budget = tab, lab, name, budget
        self.page = tab.get()
        self.cells: list[dict[str, Any]] = json.loads((lab.root / name).read_text())["cells"]
        self.errors_before = len(tab.page_errors)

    @property
    def page_errors(self) -> list[str]:
        """The JavaScript errors since this notebook was opened."""
        return self.tab.page_errors[self.errors_before:]

    # --- JupyterLab's own controls ---------------------------------------------------------

    def menu(self, menu: str, item: str) -> None:
        """Click `item` in the menu bar's `menu`, as a learner would."""
        self.page.locator(".lm-MenuBar-itemLabel").get_by_text(menu, exact=True).click(
            timeout=self.budget.left(10) * 1000)
        self.page.locator(".lm-Menu:visible .lm-Menu-itemLabel").get_by_text(
            item, exact=True).click(timeout=self.budget.left(10) * 1000)

    def session(self) -> dict[str, Any] | None:
        sessions = [s for s in self.lab.api("/api/sessions") if s["path"] == self.name]
        return sessions[0] if sessions else None

    def kernel_idle(self) -> bool:
        session = self.session()
        return bool(session and session["kernel"]["execution_state"] == "idle")

    def states(self) -> list[dict[str, Any]]:
        states: list[dict[str, Any]] = self.page.evaluate(CELL_STATES_JS, PANEL)
        return states

    def errors(self) -> list[str]:
        return [f"cell {i}: {text.strip()[-1500:]}" for i, state in enumerate(self.states())
                for text in state["stderr"] if _ERROR.search(text)]

    def select_cell(self, index: int) -> None:
        cell = self.page.locator(f"{PANEL} .jp-Notebook-cell").nth(index)
        cell.locator(".jp-InputPrompt").click(timeout=self.budget.left(10) * 1000)
        self.budget.wait_for(
            lambda: "jp-mod-active" in (cell.get_attribute("class") or ""), 10,
            f"cell {index} to become the active cell")

    # --- waiting ---------------------------------------------------------------------------

    def open(self) -> None:
        if not self.page.url.startswith(f"{self.lab.url}/lab"):  # a new tab: load JupyterLab
            self.page.goto(f"{self.lab.url}/lab/tree/{self.name}?reset",
                           timeout=self.budget.left(60) * 1000)
        else:  # double-click the notebook in JupyterLab's file browser, as a learner would
            self.page.locator(".jp-DirListing-item", has_text=self.name).dblclick(
                timeout=self.budget.left(30) * 1000)
        self.budget.wait_for(
            lambda: self.page.locator(f"{PANEL} .jp-Notebook-cell").count() == len(self.cells),
            60, f"JupyterLab to render the {len(self.cells)} cells of {self.name}")
        self.budget.wait_for(self.kernel_idle, 60, f"the kernel of {self.name} to start")
        dialogs = self.page.locator(".jp-Dialog")
        assert dialogs.count() == 0, f"a dialog opened with the notebook: {dialogs.inner_text()}"

    def wait_until_run(self, cells: range, what: str) -> None:
        """Wait until the code cells in `cells` have run, or the run stopped at an error."""
        code = [i for i in cells if self.cells[i]["cell_type"] == "code"]
        stopped_since: list[float] = []

        def finished() -> bool:
            states = self.states()
            prompts = [states[i]["prompt"] for i in code]
            if any("*" in p for p in prompts) or not self.kernel_idle():
                stopped_since.clear()
                return False
            if all(re.fullmatch(r"\[\d+\]:", p) for p in prompts) or self.errors():
                return True
            # Idle, nothing queued, yet cells not run: JupyterLab dropped the queue, or has
            # not queued the cells yet. Give it a few seconds to settle.
            stopped_since.append(time.monotonic())
            return time.monotonic() - stopped_since[0] > 5

        self.budget.wait_for(finished, RUN_TIMEOUT_S, what, interval=0.5)
        assert not (errors := self.errors()), f"{self.name}: error output\n" + "\n".join(errors)
        not_run = [i for i in code if not re.fullmatch(r"\[\d+\]:", self.states()[i]["prompt"])]
        assert not not_run, f"{self.name}: cells {not_run} did not run ({what})"

    def check_saved(self) -> None:
        """Save the working copy (File > Save Notebook); every code cell ran, none failed."""
        self.menu("File", "Save Notebook")
        tab = self.page.locator(".lm-TabBar-tab.jp-mod-current")
        self.budget.wait_for(lambda: "jp-mod-dirty" not in (tab.get_attribute("class") or ""),
                             15, f"{self.name} to be saved")
        cells = json.loads((self.lab.root / self.name).read_text())["cells"]
        code = [(i, cell) for i, cell in enumerate(cells) if cell["cell_type"] == "code"]
        not_run = [i for i, cell in code if not cell.get("execution_count")]
        failed = [f"cell {i}: {out['ename']}: {out['evalue']}" for i, cell in code
                  for out in cell.get("outputs", []) if out["output_type"] == "error"]
        assert not failed, f"{self.name}: error outputs in the saved notebook: {failed}"
        assert not not_run, f"{self.name}: cells {not_run} never ran"

    # --- the panel -------------------------------------------------------------------------

    def use_panels(self) -> int:
        """Use every panel on the page, top to bottom; returns how many there were."""
        buttons = self.page.locator(f"{PANEL} button:visible", has_text=TRIGGER)
        count = self.budget.wait_for(buttons.count, 10, 'a visible "Trigger event" button')
        for index in range(count):
            self.use_panel(buttons.nth(index))
        return int(count)

    def no_check_passed(self) -> None:
        """After Run All, every exercise check still waits for the learner."""
        outputs = self.page.locator(f"{PANEL} .jp-OutputArea-output").all_inner_texts()
        passed = [text for text in outputs if "Passed." in text]
        assert not passed, f"{self.name}: Run All passed an exercise by itself: {passed}"

    def use_panel(self, trigger: Any) -> None:
        """Start, click the trigger button CLICKS times, watch the counters, Stop.

        The lessons' `Panel` has a "Trigger event" button and an "events triggered" row;
        notebook 04's `ComparePanel` has "Trigger 1" and "N events triggered" in its table.
        """
        trigger.scroll_into_view_if_needed(timeout=self.budget.left(10) * 1000)
        root = trigger.element_handle().evaluate_handle(PANEL_ROOT_JS).as_element()
        assert root is not None, "the Trigger event button is not inside a panel"

        def counter(label: str) -> int | None:
            text = root.inner_text()
            found = (re.search(rf"{label}(?: from this panel:)?\s*([\d,]+)", text)  # 07's panel
                     or re.search(rf"([\d,]+)\s*{label}", text))
            return int(found.group(1).replace(",", "")) if found else None

        triggered, received = counter("events triggered"), counter("events received")
        assert triggered is not None, f"no 'events triggered' in the panel: {root.inner_text()}"
        start = root.query_selector("button:has-text('Start')")
        started = bool(start and start.is_enabled())
        if started:
            assert start is not None
            start.click(timeout=self.budget.left(10) * 1000)
            time.sleep(1)  # let the clients send their first polls
        for _ in range(CLICKS):
            trigger.click(timeout=self.budget.left(10) * 1000)
            time.sleep(0.3)
        self.budget.wait_for(lambda: (counter("events triggered") or 0) >= triggered + CLICKS, 15,
                             f"'events triggered' to go from {triggered} to at least "
                             f"{triggered + CLICKS} in the page")
        if started and received is not None:
            # Delivered events show up through the panel's refresh thread, not the click.
            self.budget.wait_for(lambda: (counter("events received") or 0) > received, 15,
                                 "'events received' to grow in the page")
        if started:
            stop = root.query_selector("button:has-text('Stop')")
            assert stop is not None
            stop.click(timeout=self.budget.left(10) * 1000)
            self.budget.wait_for(lambda: start.is_enabled(), 20, "the panel to stop")
        image = root.query_selector("img")
        assert image is not None
        self.budget.wait_for(lambda: image.evaluate("(img) => img.complete && img.naturalWidth"),
                             10, "the latency plot <img> to render")

    def screenshot(self, path: Path) -> None:
        """The whole notebook, outputs included: the window is made as tall as the notebook
        (up to MAX_SHOT_HEIGHT pixels) for the shot, since JupyterLab scrolls inside the page."""
        size = self.page.viewport_size
        extra = self.page.evaluate(
            """(panel) => {
                const scroller = document.querySelector(panel + ' .jp-WindowedPanel-outer');
                return scroller ? scroller.scrollHeight - scroller.clientHeight : 0;
            }""", PANEL)
        self.page.set_viewport_size(
            {"width": size["width"], "height": min(size["height"] + extra, MAX_SHOT_HEIGHT)})
        try:
            # JupyterLab lays itself out again on the next frames (Lumino's resize messages)
            self.page.evaluate("() => new Promise((done) => requestAnimationFrame("
                               "() => requestAnimationFrame(done)))")
            self.page.evaluate("""(panel) => {
                const scroller = document.querySelector(panel + ' .jp-WindowedPanel-outer');
                if (scroller) scroller.scrollTop = 0;
            }""", PANEL)
            self.page.screenshot(path=str(path), full_page=True,
                                 timeout=self.budget.left(30) * 1000)
        finally:
            self.page.set_viewport_size(size)

    def no_popups(self) -> None:
        """The news and update notifications are off: no toast, and no request for either."""
        toasts = self.page.locator(".Toastify__toast:visible")
        assert toasts.count() == 0, f"a notification showed: {toasts.all_inner_texts()}"
        asked = [url for url in self.tab.requests if "/lab/api/news" in url
                 or "/lab/api/update" in url]
        assert not asked, f"JupyterLab asked for news or updates: {asked}"

    def close_and_shut_down(self) -> None:
        kernel = (self.session() or {}).get("kernel", {}).get("id")
        self.menu("File", "Close and Shut Down Notebook…")
        self.page.locator(".jp-Dialog button.jp-mod-accept").click(
            timeout=self.budget.left(10) * 1000)
        self.budget.wait_for(lambda: self.session() is None
                             and all(k["id"] != kernel for k in self.lab.api("/api/kernels")),
                             20, f"the kernel of {self.name} to shut down")


@pytest.fixture(scope="class")
def tab(browser: Chromium) -> Iterator[LabTab]:
    """The lane's browser tab (see LabTab)."""
    kept = LabTab(browser)
    yield kept
    kept.close()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Each lane's class runs its own notebooks."""
    if "name" in metafunc.fixturenames:
        metafunc.parametrize("name", [n for n in NOTEBOOKS if LANE[n] == metafunc.cls.LANE])


class TestLaneA:
    """Lane a's notebooks (see LANE) in one JupyterLab, which is then shut down."""

    LANE = "a"

    def test_run_all_leaves_every_panel_live(self, name: str, lab: Lab, tab: LabTab,
                                             budget: Budget, screenshots: Path) -> None:
        notebook = NotebookPage(tab, lab, name, budget)
        notebook.page.set_default_timeout(budget.left(30) * 1000)
        shot = screenshots / f"{Path(name).stem}.png"
        for old in (shot, shot.with_name(f"{shot.stem}-failed.png")):
            old.unlink(missing_ok=True)
        started = time.monotonic()
        phases: dict[str, float] = {}

        def phase(step: str) -> None:  # how long each step took, printed with the total
            phases[step] = time.monotonic() - started - sum(phases.values())

        try:
            notebook.open()
            phase("open")
            notebook.menu("Run", "Run All Cells")
            notebook.wait_until_run(range(len(notebook.cells)), "Run > Run All Cells")
            phase("run all")
            notebook.no_check_passed()
            assert notebook.use_panels() >= 1
            phase("panels")
            notebook.no_popups()
            notebook.screenshot(shot)
            phase("screenshot")
            notebook.check_saved()
            assert not notebook.page_errors, f"JavaScript errors: {notebook.page_errors}"
            notebook.close_and_shut_down()
            phase("save and shut down")
        except BaseException:
            try:
                notebook.screenshot(shot.with_name(f"{shot.stem}-failed.png"))
            except Exception:  # noqa: BLE001 - the original failure matters more
                pass
            tab.close()  # the next notebook gets a fresh tab, whatever state this one is in
            raise
        finally:
            lab.shut_down_session(name)  # after a failure, don't leave its kernel running
            steps = ", ".join(f"{step} {seconds:.0f} s" for step, seconds in phases.items())
            print(f"{name}: {time.monotonic() - started:.0f} s in the browser ({steps})")

    def test_jupyterlab_stops_leaving_no_server(
            self, lab: Lab, budget: Budget, bundled_server_pids: Callable[[], set[int]]) -> None:
        """Shut the lane's JupyterLab down (by its process group): no server its kernels
        launched survives, and no kernel either."""
        lab.stop()
        assert lab.process.returncode is not None
        budget.wait_for(lambda: not lab.started_by_us(bundled_server_pids()), 10,
                        "every server the notebooks' kernels launched to exit")
        everything = {int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()}
        assert not lab.started_by_us(everything), "processes of the lab's kernels are still running"


class TestLaneB(TestLaneA):
    """Lane b's notebooks, the same way, in a JupyterLab of their own."""

    LANE = "b"
