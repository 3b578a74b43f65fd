"""helpers.compare.fanout: one moment for every lane, and the skew of the servers' stamps."""

from __future__ import annotations

import math

from helpers.compare.fanout import Job, SharedTrigger


class _Queue:
    """A lane's publisher, as the trigger sees it: it only collects the jobs."""

    def __init__(self) -> None:
        self.epoch, self.generation = 3, 1
        self.jobs: list[Job] = []

    def submit(self, job: Job) -> None:
        self.jobs.append(job)


def test_one_fan_out_hands_the_same_moment_to_every_lane() -> None:
    trigger = SharedTrigger()
    lanes = {"short": _Queue(), "asyncio": _Queue()}
    fanout = trigger.fire(lanes, "hello")
    jobs = [lane.jobs[0] for lane in lanes.values()]
    assert {job.at for job in jobs} == {fanout.at} and {job.seq for job in jobs} == {1}
    assert all(job.message == "hello" and (job.epoch, job.generation) == (3, 1) for job in jobs)
    assert trigger.fire(lanes).seq == 2 and lanes["short"].jobs[1].message == "event #2"
    assert trigger.triggered == 2


def test_skew_is_measured_over_the_fan_outs_every_lane_in_the_group_stamped() -> None:
    trigger = SharedTrigger()
    lanes = {"short": _Queue(), "naive-single": _Queue(), "asyncio": _Queue()}
    for n in range(3):
        fanout = trigger.fire(lanes)
        trigger.record_stamp("short", lanes["short"].jobs[n], {"timestamp": fanout.at + 0.001})
        trigger.record_stamp("asyncio", lanes["asyncio"].jobs[n],
                             {"timestamp": fanout.at + 0.003})
        if n == 0:  # the single-threaded server stamped only the first, and late
            trigger.record_stamp("naive-single", lanes["naive-single"].jobs[n],
                                 {"timestamp": fanout.at + 2.0})
    assert math.isclose(fanout.skew_ms(), 2.0, abs_tol=0.01)
    skew = trigger.skew(lanes, concurrent=["short", "asyncio"])
    assert skew.fanouts == 3
    assert skew.concurrent.lanes == ("short", "asyncio") and skew.concurrent.events == 3
    assert math.isclose(skew.concurrent.p50, 2.0, abs_tol=0.01)
    assert skew.all.lanes == ("short", "naive-single", "asyncio") and skew.all.events == 1
    assert math.isclose(skew.all.max, 1999.0, abs_tol=0.1)


def test_a_stamp_from_before_a_reset_is_not_counted() -> None:
    trigger = SharedTrigger()
    lanes = {"short": _Queue(), "asyncio": _Queue()}
    fanout = trigger.fire(lanes)
    trigger.reset()
    trigger.record_stamp("short", lanes["short"].jobs[0], {"timestamp": fanout.at})
    assert fanout.stamps == {} and trigger.triggered == 0
    assert trigger.skew(lanes, concurrent=list(lanes)).concurrent.events == 0
