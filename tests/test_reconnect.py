"""The pauses between tries to bring a lost connection back (comfy_gateway/reconnect.py): they
grow while the tries fail, stay at most 5 s (plus jitter), and start over once it is up."""

from __future__ import annotations

from comfy_gateway.reconnect import Reconnecting


def _pauses(r: Reconnecting, n: int) -> list[float]:
    out = []
    for _ in range(n):
        out.append(r.pause_length())
        r._tries.attempt_number += 1  # as pause() counts a try, without sleeping
    return out


def test_pauses_grow_to_a_ceiling_and_start_over_once_up():
    r = Reconnecting()  # as the reconnect loops make it
    pauses = _pauses(r, 10)
    floors = [min(0.1 * 2 ** i, 5.0) for i in range(10)]
    assert all(f <= p <= min(f + 0.1, 5.0) for p, f in zip(pauses, floors)), pauses
    assert pauses[-1] == 5.0
    r.up()
    assert 0.1 <= r.pause_length() <= 0.2
