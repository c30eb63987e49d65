"""Spinning before blocking stops when it does not pay (progress.c,
ccl__loop_drive): a wait whose op never ends within the spin costs the
CPU of a spin only once in a while, not on every op."""
import pytest

from tests import workers
from tests.peers import run_group

pytestmark = pytest.mark.timeout(300)


def test_spin_stops_when_the_peer_is_always_late():
    ops = 96
    # spin_us=500: a spin that never pays costs 500 us of CPU per op; once
    # spinning stops, one wait in 32 spins (a probe), about 16 us per op.
    spinning, _ = run_group(2, workers.spin_late_peer, ops, spin_us=500)
    never, _ = run_group(2, workers.spin_late_peer, ops, spin_us=0)
    extra = spinning - never
    assert extra < 150e-6, (
        "rank 0 used %.0f us of CPU per op more with spin_us=500 than with "
        "spin_us=0 (%.0f against %.0f): it still spins on every op"
        % (extra * 1e6, spinning * 1e6, never * 1e6))
