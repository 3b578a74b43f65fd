"""Friendly checks for the exercises at the end of each notebook."""

from __future__ import annotations

from IPython.display import HTML, display


def check(ok: bool, *, success: str, hint: str) -> bool:
    """Show a green "passed" with `success`, or a "not yet" with `hint`; return `ok`.

    Never raises: a learner who has not tried yet gets a hint, not a traceback.
    """
    if ok:
        display(HTML(f"<div style='color:#16794a'>✅ <b>Passed.</b> {success}</div>"))
    else:
        display(HTML(f"<div style='color:#9a6700'>🟡 <b>Not yet.</b> Hint: {hint}</div>"))
    return bool(ok)
