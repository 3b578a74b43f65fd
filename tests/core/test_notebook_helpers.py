"""helpers.notebook: code on screen from the file that runs, and a clean-up that leaves a
learner's panels alive."""

from __future__ import annotations

import pytest

from helpers import notebook
from helpers.notebook import clean_up, show_code, source_of


def test_source_of_finds_a_nested_route_as_it_is_on_disk() -> None:
    source = source_of("servers.flask_server", "poll_for_updates")
    assert source.startswith('@app.get("/poll_for_updates")\ndef poll_for_updates()')
    assert "time.sleep(" in source and source == source.strip("\n")


def test_source_of_a_qualified_method() -> None:
    assert source_of("helpers.clients", "PollClient._run").startswith("def _run(self)")


def test_a_missing_name_says_what_exists() -> None:
    with pytest.raises(LookupError, match="defines no nothing_here; it defines: .*launch"):
        source_of("helpers.launcher", "nothing_here")


def test_show_code_is_highlighted_python() -> None:
    code = show_code("helpers.notebook", "clean_up")
    assert code.language == "python" and "def clean_up" in code.data
    assert "<span" in code._repr_html_()  # pygments highlighting


class Thing:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def close(self) -> None:
        self.calls.append("close")


def test_clean_up_stops_everything_when_headless(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(notebook, "unattended", lambda: True)
    panel, server = Thing(), Thing()
    assert "Stopped 2" in clean_up(panel, server)
    assert panel.calls == server.calls == ["close"]
    with pytest.raises(TypeError, match="close.. or .stop"):
        clean_up(object())


def test_clean_up_leaves_everything_running_in_jupyterlab(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(notebook, "unattended", lambda: False)
    panel = Thing()
    assert "Shut the kernel down" in clean_up(panel)
    assert panel.calls == []


def test_unattended_is_its_own_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shrinking runs (headless) and stopping everything at the end (unattended) are separate:
    the browser test's JupyterLab shrinks runs, but its panels must stay live after Run All."""
    from helpers.experiment import headless, unattended

    monkeypatch.setenv("POLLING_LAB_HEADLESS", "1")
    monkeypatch.setenv("POLLING_LAB_UNATTENDED", "0")
    assert headless() and not unattended()
    monkeypatch.setenv("POLLING_LAB_UNATTENDED", "1")
    assert unattended()
