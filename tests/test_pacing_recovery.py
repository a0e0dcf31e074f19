"""A worker slowed by throttling speeds up again within seconds, whatever its batch size.

Found by the chaos run in CI: with no send rate known (SES's GetAccount reporting none), a
throttled batch set the rate to half the run's average so far, the pacer halved it again,
and the next claim took a whole batch of 40 at about 1 message a second; the rate grew back
only once per batch, so the campaign was still sending after 90 s. The pacing here runs on
a virtual clock: a sleep moves it, nothing is measured.
"""

from __future__ import annotations

from mailer.sending.pacing import BATCH_SECONDS, Pacing


class VirtualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _send(pacing: Pacing, clock: VirtualClock, until: float, batch: int) -> int:
    """Claim, pace and record calm batches (one message a call, each taking 1 ms of the
    provider's time) until ``until``."""
    sent, began = 0, clock.now
    while clock.now < until:
        n = pacing.batch_size(batch)
        start = pacing.claimed(n, 0.0)
        for _ in range(n):
            assert pacing.pacer.wait(start, 1)
            clock.sleep(0.001)
        sent += n
        achieved = sent / max(clock.now - began, 1e-9)
        pacing.recorded(n, n, throttled=False, achieved=achieved)
    return sent


def test_a_guessed_rate_recovers_within_seconds_of_calm() -> None:
    clock = VirtualClock()
    pacing = Pacing(0.0, clock.sleep, clock)  # no limit known
    # throttled while the run's average was 2/s (a slow start): the guess slows it down
    pacing.recorded(40, 30, throttled=True, achieved=2.0)
    assert 0 < pacing.rate * pacing.pacer.factor <= 2.0
    # the next claim is a few seconds of that rate, not a whole batch of 40
    assert pacing.batch_size(40) <= 2.0 * BATCH_SECONDS
    sent = _send(pacing, clock, clock.now + 60.0, batch=40)
    assert sent >= 1_000, sent  # before: about 70 in the same minute
    # once far above what the run achieves the guess is dropped: no limit, full batches,
    # and the next throttling guesses afresh
    assert pacing.rate == 0.0 and pacing.batch_size(40) == 40


def test_a_throttled_known_rate_claims_seconds_of_its_slowed_pace() -> None:
    clock = VirtualClock()
    pacing = Pacing(100.0, clock.sleep, clock)  # MAILER_SEND_RATE=100
    assert pacing.batch_size(25) == 25  # a fast pace leaves the setting alone
    assert pacing.batch_size(1_000) == int(100 * BATCH_SECONDS)
    pacing.recorded(200, 150, throttled=True, achieved=100.0)
    assert pacing.rate == 100.0  # a known limit is never guessed over
    assert pacing.batch_size(1_000) == int(50 * BATCH_SECONDS)
    _send(pacing, clock, clock.now + 20.0, batch=1_000)
    assert pacing.pacer.factor == 1.0  # back to the full rate once calm


def test_no_rate_known_and_no_throttling_leaves_the_batch_alone() -> None:
    clock = VirtualClock()
    pacing = Pacing(0.0, clock.sleep, clock)
    assert pacing.batch_size(5_000) == 5_000
    pacing.recorded(5_000, 5_000, throttled=False, achieved=9_000.0)
    assert pacing.batch_size(5_000) == 5_000 and pacing.rate == 0.0
