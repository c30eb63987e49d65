"""torch's names in pyccl's own API: broadcast(src=), all_gather(output,
input) and reduce_scatter(output, input, op) in torch's order (the old
spelling still works, with a DeprecationWarning), ReduceOp.PRODUCT and the
bitwise ops, Work.get_future() and Work.exception(), send/recv and the
direct collectives (reduce, gather, scatter, all_to_all, all_gatherv,
reduce_scatterv), on numpy arrays and torch tensors.  Ranks are threads
of this process, each with its own Communicator."""
import threading
import warnings

import numpy as np
import pytest

import pyccl

pytestmark = pytest.mark.timeout(120)


def run_threads(n, fn):
    master = pyccl.Master()
    results, errors = [None] * n, []

    def body(rank):
        try:
            with pyccl.Communicator(master, n, rank, op_timeout=20) as comm:
                results[rank] = fn(comm)
        except BaseException as exc:  # noqa: BLE001
            errors.append((rank, exc))
    threads = [threading.Thread(target=body, args=(r,)) for r in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    master.close()
    assert not errors, errors
    return results


def test_new_argument_order_and_old_spelling():
    def fn(comm):
        n, r = comm.world_size, comm.rank
        x = np.full(2, r + 1, np.float32)
        out = np.zeros(2 * n, np.float32)
        assert comm.all_gather(out, x) is out
        new = out.tolist()
        with pytest.warns(DeprecationWarning, match="all_gather"):
            comm.all_gather(x, np.zeros(2 * n, np.float32))
        with pytest.warns(DeprecationWarning):
            comm.all_gather(x, out=np.zeros(2 * n, np.float32))
        allocated = comm.all_gather(x)
        o = np.zeros(2, np.float32)
        comm.reduce_scatter(o, np.arange(2.0 * n, dtype=np.float32), "max")
        with pytest.warns(DeprecationWarning, match="reduce_scatter"):
            comm.reduce_scatter(np.arange(2.0 * n, dtype=np.float32),
                                np.zeros(2, np.float32))
        y = np.full(3, 7.0 if r == 1 else 0.0)
        comm.broadcast(y, src=1)
        with pytest.warns(DeprecationWarning, match="src="):
            comm.broadcast(y, root=1)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            comm.broadcast(y, 1)  # positional: the same in both spellings
        return new, allocated.shape, o.tolist(), y.tolist()
    for new, shape, o, y in run_threads(2, fn):
        assert new == [1, 1, 2, 2] and shape == (2, 2)
        assert y == [7.0] * 3
    assert [res[2] for res in run_threads(2, fn)] == [[0.0, 1.0], [2.0, 3.0]]


def test_world_of_one_reads_two_arguments_in_the_new_order():
    def fn(comm):
        out, x = np.zeros(3), np.arange(3.0)
        comm.all_gather(out, x)
        return out.tolist(), x.tolist()
    assert run_threads(1, fn) == [([0.0, 1.0, 2.0], [0.0, 1.0, 2.0])]


def test_reduce_ops_product_and_bitwise():
    assert pyccl.ReduceOp.PRODUCT is pyccl.ReduceOp.PROD

    def fn(comm):
        r = comm.rank
        p = np.full(2, r + 2.0)
        comm.all_reduce(p, "product")
        bits = np.array([r + 1, 6], np.int32)
        out = {}
        for op in ("band", "bor", "bxor"):
            b = bits.copy()
            comm.all_reduce(b, op)
            out[op] = b.tolist()
        with pytest.raises(pyccl.InvalidArgument, match="integer"):
            comm.all_reduce(np.ones(2, np.float32), pyccl.ReduceOp.BAND)
        return p.tolist(), out
    for p, out in run_threads(2, fn):
        assert p == [6.0, 6.0]
        assert out == {"band": [0, 6], "bor": [3, 6], "bxor": [3, 0]}


def test_future_and_exception():
    torch = pytest.importorskip("torch")

    def fn(comm):
        t = torch.ones(4)
        work = comm.all_reduce(t, async_op=True)
        fut = work.get_future()
        assert fut is work.get_future()
        value = fut.wait()
        assert work.exception() is None
        bad = comm.recv(np.zeros(3), 1 - comm.rank, tag=9, async_op=True)
        sent = comm.send(np.zeros(4), 1 - comm.rank, tag=9, async_op=True)
        for w in (bad, sent):  # counts disagree: both sides fail
            with pytest.raises(pyccl.Mismatch):
                w.wait()
            assert isinstance(w.exception(), pyccl.Mismatch)
        return value.tolist()
    assert run_threads(2, fn) == [[2.0] * 4] * 2


def test_point_to_point_and_direct_collectives():
    def fn(comm):
        n, r = comm.world_size, comm.rank
        res = {}
        if r == 0:
            for dst in range(1, n):
                comm.send(np.full(2, dst, np.int64), dst, tag=3)
            srcs = sorted(comm.recv(np.zeros(1), None) for _ in range(n - 1))
            res["any"] = srcs
        else:
            got = np.zeros(2, np.int64)
            assert comm.recv(got, 0, tag=3) == 0
            res["recv"] = got.tolist()
            comm.send(np.zeros(1), 0)
        x = np.arange(3.0) + r
        assert comm.reduce(x, dst=n - 1, op="max") is (x if r == n - 1
                                                       else None)
        res["reduce"] = x.tolist()
        res["gather"] = comm.gather(np.full(1, r), dst=0)
        t = np.zeros(2)
        comm.scatter(t, np.arange(2.0 * n) if r == 1 else None, src=1)
        res["scatter"] = t.tolist()
        counts = [k + 1 for k in range(n)]
        o = np.zeros(sum(counts))
        comm.all_gatherv(o, np.full(counts[r], float(r)), counts)
        res["agv"] = o.tolist()
        o = np.zeros(counts[r])
        comm.reduce_scatterv(o, np.ones(sum(counts)), counts)
        res["rsv"] = o.tolist()
        o = np.zeros(n)
        comm.all_to_all(o, np.arange(n, dtype=np.float64) + 10 * r)
        res["a2a"] = o.tolist()
        return res
    results = run_threads(3, fn)
    assert results[0]["any"] == [1, 2]
    assert results[1]["recv"] == [1, 1] and results[2]["recv"] == [2, 2]
    assert results[2]["reduce"] == [2.0, 3.0, 4.0]
    assert results[0]["gather"].tolist() == [[0], [1], [2]]
    assert [res["scatter"] for res in results] == [[0, 1], [2, 3], [4, 5]]
    for r, res in enumerate(results):
        assert res["agv"] == [0.0, 1.0, 1.0, 2.0, 2.0, 2.0]
        assert res["rsv"] == [3.0] * (r + 1)
        assert res["a2a"] == [float(10 * k + r) for k in range(3)]
