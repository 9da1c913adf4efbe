"""How many pre-started sandboxes a warm pool aims for after a burst, and when it may
pre-start them (``sandbox/pool_demand.py``): pure bookkeeping on given times."""

from __future__ import annotations

from pathlib import Path

from ember.sandbox.pool_demand import CpuLoad, PoolDemand


def burst(demand: PoolDemand, starts: int, at: float) -> None:
    for _ in range(starts):
        demand.note_start(at)
    for _ in range(starts):
        demand.note_done(at)


def test_a_burst_raises_the_target_to_its_size_within_the_maximum() -> None:
    demand = PoolDemand(configured=3, maximum=128, window_s=60, growth_delay_s=1)
    assert demand.target(0) == 3
    burst(demand, 100, at=10)
    assert demand.target(10) == 100
    burst(demand, 100, at=20)
    assert demand.target(20) == 100  # the largest burst, not the sum
    burst(demand, 100, at=20.5)  # within burst_span_s: 200 takes in one second
    assert demand.target(21) == 128


def test_takes_one_at_a_time_do_not_grow_the_pool() -> None:
    demand = PoolDemand(configured=3, maximum=128, window_s=60, growth_delay_s=1)
    for second in range(30):
        burst(demand, 1, at=10 + 2 * second)
    assert demand.target(70) == 3
    assert demand.next_change(70) is None


def test_sequential_takes_count_as_their_rate_per_second_not_their_total() -> None:
    demand = PoolDemand(configured=3, maximum=128, window_s=60, growth_delay_s=1)
    for eighth in range(80):  # ten seconds of one take every 0.125 s
        burst(demand, 1, at=10 + eighth / 8)
    assert demand.target(20) == 8


def test_the_target_goes_back_to_the_configured_size_once_the_bursts_leave_the_window() -> None:
    demand = PoolDemand(configured=3, maximum=128, window_s=60, growth_delay_s=1)
    burst(demand, 50, at=10)
    burst(demand, 20, at=40)
    assert demand.target(69.9) == 50
    assert demand.next_change(69.9) == 70
    assert demand.target(70) == 20  # the first burst is a minute old
    assert demand.target(100) == 3
    assert demand.next_change(100) is None


def test_nothing_is_pre_started_while_a_take_is_in_flight() -> None:
    demand = PoolDemand(configured=3, maximum=128, window_s=60, growth_delay_s=1)
    demand.note_start(5)
    assert demand.in_flight == 1
    assert demand.refill_target(5) == 0
    assert demand.quiet_in(5) == 1
    demand.note_done(5.5)
    assert demand.refill_target(5.5) == 3


def test_growth_waits_for_the_starts_to_pause() -> None:
    demand = PoolDemand(configured=3, maximum=128, window_s=60, growth_delay_s=1)
    burst(demand, 10, at=10)
    assert demand.refill_target(10.5) == 3  # up to the configured size at once
    assert demand.quiet_in(10.5) == 0.5
    assert demand.next_change(10.5) == 11  # then come back to grow
    assert demand.refill_target(11) == 10
    assert demand.quiet_in(11) == 0
    assert demand.next_change(11) == 70  # and to shrink back


def test_a_maximum_at_or_below_the_configured_size_never_grows() -> None:
    demand = PoolDemand(configured=3, maximum=0, window_s=60, growth_delay_s=1)
    burst(demand, 100, at=10)
    assert demand.target(20) == 3
    assert demand.next_change(20) is None


def test_cpu_load_is_the_busy_share_between_readings(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq
    stat.write_text("cpu  100 0 100 800 0 0 0\ncpu0 1 2 3 4 5\n")
    load = CpuLoad(stat)
    stat.write_text("cpu  130 0 120 850 0 0 0\n")
    assert load.busy() == 0.5
    assert load.busy() is None  # no time passed
    stat.unlink()
    assert load.busy() is None
