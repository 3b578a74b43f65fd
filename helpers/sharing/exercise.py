"""The check of notebook 08's exercise: count one client's lost and duplicated messages."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from helpers.exercises import check
from helpers.sharing.audience import count_client

#: (published, received): one small case per rule of the count
CASES: list[tuple[list[str], list[str]]] = [
    (["event 1", "event 2"], ["event 1", "event 2"]),  # everything, once
    (["event 1", "event 2", "event 3"], ["event 2"]),  # two never came
    (["event 1", "event 2"], ["event 1", "event 1", "event 2", "event 1"]),  # 1 came 3 times
    (["event 1", "event 2"], ["event 2", "event 1"]),  # order does not matter here
    (["event 1"], ["event 9", "event 9"]),  # someone else's messages are not ours to count
    ([], ["event 1"]),  # nothing published: nothing lost
    (["event 1", "event 2", "event 3"], ["event 3", "event 3"]),  # lost and duplicated at once
]


def check_counting(my_count: Callable[[Sequence[str], Sequence[str]], tuple[int, int]]) -> bool:
    """Run `my_count(published, received)` on each case and compare it with the lesson's count.

    Shows a hint naming the first case that differs; never raises.
    """
    for published, received in CASES:
        expected = count_client(published, received)
        try:
            got = tuple(my_count(list(published), list(received)))
        except NotImplementedError:
            return check(False, success="", hint="write my_count first, then run this cell.")
        except Exception as exc:  # noqa: BLE001 - a learner's bug becomes a hint
            return check(False, success="", hint=f"my_count({published}, {received}) raised "
                                                 f"{type(exc).__name__}: {exc}")
        if got != expected:
            return check(False, success="", hint=(
                f"published {published}, received {received}: you counted (lost, duplicates) "
                f"= {got}, but it is {expected}. A message counts as lost if it never came, "
                "and each extra arrival of a published message is one duplicate."))
    return check(True, hint="", success=(
        f"all {len(CASES)} cases agree with the count behind every table in this notebook."))
