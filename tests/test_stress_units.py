"""The stress tool's pure parts, without processes: the report framing,
the workload's expected results, the ledger's agreement and recovery
rules, the schedule's reproducibility, and the command line."""
from __future__ import annotations

import shlex
import struct

import msgpack
import numpy as np
import pytest

from stress import cli, scenarios
from stress import workload as wl
from stress.ledger import Fault, Ledger, percentile
from stress.schedule import Rates, make_schedule
from stress.wire import MAX_FRAME, FrameDecoder, FrameError, encode


# -- wire ----------------------------------------------------------------

def test_frames_round_trip_whole_and_byte_by_byte():
    msgs = [{"t": "ops", "ops": [[1, 0, True, "", 2**64 - 1, 8, 1.5, 0.1]]},
            {"t": "bye", "why": "finish"}]
    data = b"".join(encode(m) for m in msgs)
    d = FrameDecoder()
    d.feed(data)
    assert list(d.messages()) == msgs
    d = FrameDecoder()
    got = []
    for i in range(len(data)):
        d.feed(data[i:i + 1])
        got.extend(d.messages())
    assert got == msgs and d.pending == 0


@pytest.mark.parametrize("length", [0, MAX_FRAME + 1, 2**32 - 1])
def test_frame_lengths_are_checked_before_buffering(length):
    d = FrameDecoder()
    d.feed(struct.pack("<I", length) + b"x")
    with pytest.raises(FrameError, match="outside"):
        list(d.messages())


@pytest.mark.parametrize("body", [b"\xc1", msgpack.packb([1, 2]),
                                  msgpack.packb({"no": "type"})])
def test_malformed_bodies_are_frame_errors(body):
    d = FrameDecoder()
    d.feed(struct.pack("<I", len(body)) + body)
    with pytest.raises(FrameError):
        list(d.messages())


def test_oversized_message_is_refused_at_encode():
    with pytest.raises(FrameError):
        encode({"t": "x", "blob": b"\0" * (MAX_FRAME + 1)})


# -- workload ------------------------------------------------------------

MEMBERS = [7, 2, 11]


def _inputs(spec, key, world):
    return [wl.make_input(spec, key, p, world) for p in MEMBERS]


@pytest.mark.parametrize("dtype", wl.DTYPES)
@pytest.mark.parametrize("n", [1, 3, 1025])
def test_expected_all_reduce_matches_a_direct_reduction(dtype, n):
    key = wl.op_key(5, 3, 64)
    for redop, f in (("sum", np.add), ("max", np.maximum),
                     ("min", np.minimum)):
        spec = wl.OpSpec(64, "all_reduce", n, dtype, redop)
        xs = _inputs(spec, key, 3)
        want = f.reduce(xs).astype(dtype)
        got = wl.expected(spec, key, MEMBERS, 0)
        assert got.dtype == np.dtype(dtype)
        assert np.array_equal(got, want)


def test_expected_broadcast_gather_and_scatter():
    key = wl.op_key(1, 1, 1)
    b = wl.OpSpec(1, "broadcast", 17, "int32", root=2)
    assert np.array_equal(wl.expected(b, key, MEMBERS, 0),
                          _inputs(b, key, 3)[2])
    g = wl.OpSpec(1, "all_gather", 5, "float32")
    assert np.array_equal(wl.expected(g, key, MEMBERS, 1),
                          np.concatenate(_inputs(g, key, 3)))
    r = wl.OpSpec(1, "reduce_scatter", 4, "int64")
    total = sum(_inputs(r, key, 3))
    for rank in range(3):
        assert np.array_equal(wl.expected(r, key, MEMBERS, rank),
                              total[rank * 4:(rank + 1) * 4])


def test_inputs_differ_per_peer_and_op_and_sums_stay_exact_in_float32():
    key = wl.op_key(1, 2, 3)
    spec = wl.OpSpec(3, "all_reduce", 100000, "float32")
    a, b = wl.make_input(spec, key, 1, 2), wl.make_input(spec, key, 2, 2)
    assert not np.array_equal(a, b)
    assert not np.array_equal(a, wl.make_input(
        spec, wl.op_key(1, 2, 4), 1, 2))
    assert a.max() * 2000 < 2**24  # exact for up to 2000 peers


def test_plans_are_the_same_for_every_member_and_cover_every_kind():
    cfg = wl.WorkloadConfig(large_rate=0.05)
    kinds, algos, sizes = set(), set(), set()
    for b in range(400):
        plan = wl.plan_batch(9, 4, b, 5, cfg)
        assert plan == wl.plan_batch(9, 4, b, 5, cfg)
        assert plan[-1].kind == "control"
        assert 2 <= len(plan) <= cfg.max_concurrent + 1
        for s in plan[:-1]:
            kinds.add(s.kind)
            algos.add(s.algorithm)
            item = np.dtype(s.dtype).itemsize
            per_rank = s.count * (5 if s.kind in ("all_gather",
                                                  "reduce_scatter") else 1)
            assert per_rank * item <= cfg.max_bytes
            if s.kind != "barrier":
                sizes.add(s.count * item)
    assert kinds == set(wl.KINDS)
    assert {"ring", "star"} <= algos
    assert min(sizes) == 4 and max(sizes) >= 16 << 20


def test_quantized_all_reduces_are_float32_sums_in_every_format():
    cfg = wl.WorkloadConfig(quant_rate=0.5)
    seen = set()
    for world in (3, 9):
        for b in range(600):
            for s in wl.plan_batch(5, 1, b, world, cfg)[:-1]:
                if not s.quant:
                    continue
                assert s.kind == "all_reduce" and s.dtype == "float32"
                assert s.redop == "sum"
                assert s.algorithm in wl.QUANT_ALGORITHMS
                assert "quantized " + s.quant in s.describe()
                seen.add((world, s.quant, s.algorithm))
    # Every format and algorithm at 3 peers; no f16 at 9 (a sum of 9
    # inputs can pass 65504, f16's largest).
    assert {(q, a) for w, q, a in seen if w == 3} == {
        (q, a) for q in wl.QUANTS for a in wl.QUANT_ALGORITHMS}
    assert {q for w, q, _ in seen if w == 9} == set(wl.QUANTS) - {"f16"}
    off = wl.WorkloadConfig(quant_rate=0.0)
    assert not any(s.quant for b in range(200)
                   for s in wl.plan_batch(5, 1, b, 3, off))


def test_first_difference_names_the_element():
    a = np.arange(5)
    b = a.copy()
    b[3] = 9
    assert "first at [3]: 3, expected 9" in wl.first_difference(a, b)


# -- ledger --------------------------------------------------------------

def _epoch(led, peer, epoch, members, state=1, newcomer=False, received=0):
    return led.on_epoch(peer, {"e": epoch, "rank": members.index(peer),
                               "members": members, "state": state,
                               "newcomer": newcomer, "received": received},
                        0.0)


def test_agreeing_members_raise_nothing_and_differences_are_named():
    led = Ledger()
    g, found = _epoch(led, 1, 3, [1, 2, 3])
    assert not found
    _epoch(led, 2, 3, [1, 2, 3])
    _epoch(led, 3, 3, [1, 2, 3])
    led.on_ops(1, g, [[0, 0, True, "", 42, 8, 1.0, 0.1]], 1.0)
    led.on_ops(2, g, [[0, 0, True, "", 42, 8, 1.1, 0.1]], 1.0)
    led.on_ops(3, g, [[0, 0, False, "PeerLost", None, 8, 1.2, 0.1],
                      [1, 0, True, "", 43, 8, 1.3, 0.1]], 1.0)
    led.on_ops(1, g, [[1, 0, True, "", 44, 8, 1.3, 0.1]], 1.0)
    assert led.compared == 3
    found = led.resolve(100.0)
    assert [v.kind for v in found] == ["disagreement", "disagreement"]
    assert "peer 1 succeeded, peer 3 failed (PeerLost)" in found[0].message
    assert "hash 0x2b vs 0x2c" in found[1].message


def test_a_victim_of_the_group_is_excused():
    led = Ledger()
    g, _ = _epoch(led, 1, 3, [1, 2])
    led.on_ops(1, g, [[0, 0, True, "", 1, 8, 1.0, 0.1]], 1.0)
    led.on_ops(2, g, [[0, 0, False, "PeerLost", None, 8, 1.0, 0.1]], 1.0)
    led.fault(Fault("stop", 0.5, victim=2, gid=g))
    assert len(led.resolve(100.0)) == 1  # a stopped member kept is a survivor
    led.on_ops(1, g, [[1, 0, True, "", 1, 8, 1.0, 0.1]], 1.0)
    led.on_ops(2, g, [[1, 0, False, "PeerLost", None, 8, 1.0, 0.1]], 1.0)
    led.excuse(2, g)  # ... but not one the master dropped (Rejected)
    assert led.resolve(100.0) == [] and led.excused_differences == 1
    assert "op 1" in led.excused_list[0]


def test_candidates_wait_for_their_excuse():
    led = Ledger()
    g, _ = _epoch(led, 1, 3, [1, 2])
    led.on_ops(1, g, [[0, 0, True, "", 1, 8, 1.0, 0.1]], 10.0)
    led.on_ops(2, g, [[0, 0, True, "", 2, 8, 1.0, 0.1]], 10.0)
    assert led.resolve(15.0, older_than=20.0) == []
    led.excuse(2, g)  # it was dropped from the group meanwhile
    assert led.resolve(40.0, older_than=20.0) == []


def test_membership_and_state_divergence():
    led = Ledger()
    _epoch(led, 1, 4, [1, 2], state=5)
    _, found = _epoch(led, 2, 4, [1, 2], state=6)
    assert [v.kind for v in found] == ["state_divergence"]
    _, found = _epoch(led, 3, 4, [3, 1])
    assert [v.kind for v in found] == ["membership"]
    _, found = _epoch(led, 5, 7, [5], received=100)
    assert [v.kind for v in found] == ["state_divergence"]
    _, found = _epoch(led, 6, 8, [6], newcomer=True, received=100)
    assert found == []


def test_recovery_is_the_slowest_survivors_next_op_without_the_victim():
    led = Ledger()
    g1, _ = _epoch(led, 1, 1, [1, 2, 3])
    f = Fault("kill", 10.0, victim=3, gid=g1)
    led.fault(f)
    g2, _ = _epoch(led, 1, 2, [1, 2])
    led.on_ops(1, g2, [[0, 0, True, "", 1, 8, 10.2, 0.1]], 0)
    led.on_ops(2, g2, [[0, 0, True, "", 1, 8, 10.5, 0.1]], 0)
    assert led.recovery(f) == pytest.approx(0.5)
    assert percentile([1, 2, 3, 4], 50) == 2 and percentile([], 99) is None


# -- schedule, options ---------------------------------------------------

def test_schedule_is_a_function_of_the_seed():
    r = Rates(kill=10, stop=10, leave=5, join=3, storm=1, master=2)
    a = make_schedule(4, r, 120)
    assert [e.describe() for e in a] == [e.describe() for e in
                                         make_schedule(4, r, 120)]
    assert [e.describe() for e in a] != [e.describe() for e in
                                         make_schedule(5, r, 120)]
    short = make_schedule(4, r, 20, ensure_each=True)
    assert {e.kind for e in short} == {"kill", "stop", "leave", "join",
                                       "storm", "master"}
    assert len(make_schedule(4, r, None, steps=7)) == 7


def test_repro_command_gives_back_the_same_options():
    args = cli.build_parser().parse_args(
        ["--scenario", "stall", "--seed", "42", "--peers", "5",
         "--kill-rate", "3", "--stop-max", "7", "--no-rejoin",
         "--max-bytes", "8M", "--algorithms", "ring", "--json", "x.json"])
    opts = cli.options_from_args(args)
    cmd = scenarios.repro_command(opts, duration=33)
    assert "--json" not in cmd
    again = cli.options_from_args(cli.build_parser().parse_args(
        shlex.split(cmd)[2:]))
    opts.duration, opts.json_path = 33, None
    assert again == opts


def test_usage_errors_exit_2(capsys):
    assert cli.main(["--peers", "2", "--min-peers", "3"]) == 2
    assert "min-peers" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        cli.main(["--scenario", "nope"])
    assert e.value.code == 2


def test_namespace_scenarios_skip_cleanly_without_root(monkeypatch, capsys):
    import stress.netns
    monkeypatch.setattr(stress.netns, "unavailable",
                        lambda: "network namespaces need root")
    assert cli.main(["--scenario", "partition", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "SKIPPED scenario partition" in out and "need root" in out


def test_list_scenarios(capsys):
    assert cli.main(["--list-scenarios"]) == 0
    out = capsys.readouterr().out
    for name in ("steady", "churn", "stall", "master-restart", "join-storm",
                 "partition", "wan"):
        assert name in out
