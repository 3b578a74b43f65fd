"""helpers/panel.py PanelBase: the status line, run buttons, progress and refresh loop."""

from __future__ import annotations

import threading
import time

import pytest

from helpers.panel import PanelBase


class Counter(PanelBase):
    """The smallest panel: Start and Stop, and a refresh that counts (and fails on request)."""

    REFRESH_S = 0.02

    def __init__(self) -> None:
        super().__init__()
        self.running = False
        self.refreshed = 0
        self.fail = False
        self._run_buttons()
        self._show(self.start_button, self.stop_button, self.progress, self.status)
        self._start_refreshing()

    @property
    def live(self) -> bool:
        return self.running

    def start(self) -> None:
        self.running = True
        self._set_running(True)

    def stop(self) -> None:
        self.running = False
        self._set_running(False)

    def refresh(self) -> None:
        if self.fail:
            raise RuntimeError("boom")
        self.refreshed += 1


def wait_for(predicate: object, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_buttons_call_start_and_stop_and_toggle_each_other() -> None:
    panel = Counter()
    try:
        assert not panel.start_button.disabled and panel.stop_button.disabled
        panel.start_button.click()
        assert panel.running and panel.start_button.disabled and not panel.stop_button.disabled
        panel.stop_button.click()
        assert not panel.running and not panel.start_button.disabled
    finally:
        panel.close()


def test_the_refresh_thread_refreshes_only_while_live() -> None:
    panel = Counter()
    try:
        time.sleep(0.1)
        assert panel.refreshed == 0
        panel.start()
        wait_for(lambda: panel.refreshed >= 3)
        panel.stop()
        time.sleep(0.05)
        stopped_at = panel.refreshed
        time.sleep(0.1)
        assert panel.refreshed == stopped_at
    finally:
        panel.close()


def test_a_failing_refresh_is_shown_never_printed(capsys: pytest.CaptureFixture[str]) -> None:
    panel = Counter()
    try:
        panel.fail = True
        panel.start()
        wait_for(lambda: "boom" in panel.status.value)
        assert "Refresh failed" in panel.status.value
    finally:
        panel.close()
    assert capsys.readouterr() == ("", "")


def test_say_escapes_and_stamps_the_status_line() -> None:
    panel = Counter()
    try:
        panel.say("<b>5 < 6</b>")
        assert "&lt;b&gt;5 &lt; 6&lt;/b&gt;" in panel.status.value
        assert time.strftime("%H:") in panel.status.value
    finally:
        panel.close()


def test_a_timed_run_shows_progress_and_hides_it_afterwards() -> None:
    panel = Counter()
    try:
        with pytest.raises(ValueError), panel._running_with_progress() as progress:
            assert panel.progress.layout.visibility == "visible"
            assert panel.start_button.disabled
            progress(0.5)
            assert panel.progress.value == 0.5
            raise ValueError("the engine failed")
        assert panel.progress.layout.visibility == "hidden"
        assert not panel.start_button.disabled
    finally:
        panel.close()


def test_close_ends_the_refresh_thread_and_displays_as_its_widget() -> None:
    panel = Counter()
    bundle = panel._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    thread = panel._timer
    assert isinstance(thread, threading.Thread) and thread.daemon
    panel.close()
    thread.join(1)
    assert not thread.is_alive()
