"""Backend "pyccl" through torch.distributed: every call gloo offers on
CPU, at world sizes 2 and 3, against gloo's results from the same worker
(exact: the inputs are small integers) and against values computed here.
torch's own suite skips reduce_scatter and all_to_all on CPU; they are
covered here."""
import pytest

pytest.importorskip("torch")

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

from tests.torch_suite.harness import run_torch_group  # noqa: E402

pytestmark = pytest.mark.timeout(300)

R = dist.ReduceOp


def _vals(rank, k=4, dtype=torch.float32):
    return (torch.arange(k) % 3 + rank + 1).to(dtype)


def everything(rank, n):
    """Every call once or more; returns {name: result as lists}."""
    backend = dist.get_backend()
    out = {"backend": backend, "pg_name": dist.group.WORLD.name()}
    ops = {"sum": R.SUM, "product": R.PRODUCT, "min": R.MIN, "max": R.MAX}
    if backend == "pyccl":
        ops["avg"] = R.AVG
    for name, op in ops.items():
        for dt in (torch.float32, torch.float64, torch.float16,
                   torch.bfloat16, torch.int32, torch.int64, torch.uint8,
                   torch.int8):
            if name == "avg" and not dt.is_floating_point:
                continue
            t = _vals(rank, 5, dt)
            dist.all_reduce(t, op=op)
            out["all_reduce %s %s" % (name, dt)] = t.tolist()
    for name, op in (("band", R.BAND), ("bor", R.BOR), ("bxor", R.BXOR)):
        t = torch.tensor([rank + 1, 6, 7 * rank, -1], dtype=torch.int32)
        dist.all_reduce(t, op=op)
        out["all_reduce %s" % name] = t.tolist()
    for name, op in (("sum", R.SUM), ("product", R.PRODUCT), ("min", R.MIN),
                     ("max", R.MAX)):
        t = torch.tensor([rank == 0, True, False, rank == n - 1])
        dist.all_reduce(t, op=op)
        out["all_reduce bool %s" % name] = t.tolist()
    c = torch.tensor([complex(rank, 1), complex(2, rank)])
    dist.all_reduce(c)
    out["all_reduce complex"] = [[z.real, z.imag] for z in c.tolist()]
    nc = torch.arange(12.0).reshape(3, 4).t() + rank  # not contiguous
    dist.all_reduce(nc)
    out["all_reduce non-contiguous"] = nc.tolist()
    e = torch.zeros(0)
    dist.all_reduce(e)
    work = dist.all_reduce(_vals(rank), async_op=True)
    fut = work.get_future()
    out["future value"] = [t.tolist() for t in fut.wait()]
    work.wait()
    out["work done"] = [work.is_completed(), work.exception() is None]
    tensors = [_vals(rank, 3), _vals(rank, 2)]
    dist.group.WORLD.allreduce_coalesced(tensors).wait()
    out["allreduce_coalesced"] = [t.tolist() for t in tensors]

    for root in range(n):
        t = _vals(rank) * 10 if rank == root else torch.zeros(4)
        dist.broadcast(t, root)
        out["broadcast %d" % root] = t.tolist()
        t = _vals(rank, 3, torch.int64)
        dist.reduce(t, root, op=R.MAX)
        if rank == root:
            out["reduce %d" % root] = t.tolist()
        gl = [torch.zeros(2) for _ in range(n)] if rank == root else None
        dist.gather(torch.full((2,), float(rank)), gl, dst=root)
        if rank == root:
            out["gather %d" % root] = [g.tolist() for g in gl]
        s = torch.zeros(2)
        sl = [torch.full((2,), float(10 * r + root)) for r in range(n)] \
            if rank == root else None
        dist.scatter(s, sl, src=root)
        out["scatter %d" % root] = s.tolist()

    gl = [torch.zeros(3) for _ in range(n)]
    dist.all_gather(gl, _vals(rank, 3))
    out["all_gather"] = [g.tolist() for g in gl]
    flat = torch.zeros(3 * n)
    dist.all_gather(list(flat.chunk(n)), _vals(rank, 3))  # lands in place
    out["all_gather chunks"] = flat.tolist()
    o = torch.zeros(3 * n)
    dist.all_gather_into_tensor(o, _vals(rank, 3))
    out["all_gather_into_tensor"] = o.tolist()
    bl = [torch.zeros(2, dtype=torch.bool) for _ in range(n)]
    dist.all_gather(bl, torch.tensor([rank % 2 == 0, True]))
    out["all_gather bool"] = [b.tolist() for b in bl]

    o = torch.zeros(2)
    dist.reduce_scatter(o, [torch.full((2,), float(rank + r)) for r in range(n)])
    out["reduce_scatter"] = o.tolist()
    o = torch.zeros(2)
    dist.reduce_scatter(o, [torch.full((2,), float(rank * r + 1))
                            for r in range(n)], op=R.MAX)
    out["reduce_scatter max"] = o.tolist()
    o = torch.zeros(3)
    dist.reduce_scatter_tensor(o, torch.arange(3.0 * n) * (rank + 1))
    out["reduce_scatter_tensor"] = o.tolist()

    o = torch.zeros(2 * n)
    dist.all_to_all_single(o, torch.arange(2.0 * n) + 100 * rank)
    out["all_to_all_single equal"] = o.tolist()
    # rank r sends r + j + 1 rows of width 2 to rank j
    in_splits = [rank + j + 1 for j in range(n)]
    out_splits = [j + rank + 1 for j in range(n)]
    src = torch.cat([torch.full((k, 2), float(10 * rank + j))
                     for j, k in enumerate(in_splits)])
    o = torch.zeros(sum(out_splits), 2)
    dist.all_to_all_single(o, src, out_splits, in_splits)
    out["all_to_all_single unequal"] = o.tolist()
    outs = [torch.zeros(2) for j in range(n)]
    dist.all_to_all(outs, [torch.full((2,), float(rank * 10 + j))
                           for j in range(n)])
    out["all_to_all lists equal"] = [t.tolist() for t in outs]
    if backend == "pyccl":  # gloo takes equal sizes only
        outs = [torch.zeros(j + 1) for j in range(n)]
        dist.all_to_all(outs, [torch.full((rank + 1,), float(rank * 10 + j))
                               for j in range(n)])
        out["all_to_all lists"] = [t.tolist() for t in outs]

    dist.barrier()
    if rank == 0:
        for dst in range(1, n):
            dist.send(torch.full((3,), float(dst)), dst, tag=7)
        got = []
        for _ in range(1, n):
            t = torch.zeros(2)
            src_rank = dist.recv(t)  # any source
            got.append((src_rank, t.tolist()))
        out["recv any source"] = sorted(got)
    else:
        t = torch.zeros(3)
        dist.recv(t, 0, tag=7)
        out["recv"] = t.tolist()
        dist.send(torch.full((2,), float(rank)), 0)
    nxt, prv = (rank + 1) % n, (rank - 1) % n
    r_t = torch.zeros(2)
    reqs = dist.batch_isend_irecv([
        dist.P2POp(dist.isend, torch.full((2,), float(rank)), nxt),
        dist.P2POp(dist.irecv, r_t, prv)])
    for req in reqs:
        req.wait()
    out["batch_isend_irecv"] = r_t.tolist()
    # The same exchange again and again (one tag both ways: with two ranks
    # a send and a recv of the same pair share every wire tag).
    seen = []
    for k in range(5):
        r_t = torch.zeros(2)
        reqs = dist.batch_isend_irecv([
            dist.P2POp(dist.isend, torch.full((2,), float(rank * 10 + k)), nxt),
            dist.P2POp(dist.irecv, r_t, prv)])
        for req in reqs:
            req.wait()
        seen.append(r_t.tolist())
    out["repeated batch_isend_irecv"] = seen

    objs = [None] * n
    dist.all_gather_object(objs, {"rank": rank, "s": "x" * rank})
    out["all_gather_object"] = objs
    ol = [rank, "a"] if rank == 1 else [None, None]
    dist.broadcast_object_list(ol, src=1)
    out["broadcast_object_list"] = ol
    go = [None] * n if rank == 0 else None
    dist.gather_object(("g", rank), go, dst=0)
    if rank == 0:
        out["gather_object"] = go
    so = [None]
    dist.scatter_object_list(so, [("s", r) for r in range(n)]
                             if rank == 0 else None, src=0)
    out["scatter_object_list"] = so

    sub = dist.new_group([0, n - 1])
    if rank in (0, n - 1):
        t = torch.ones(2) * (rank + 1)
        dist.all_reduce(t, group=sub)
        out["subgroup all_reduce"] = t.tolist()
        dist.destroy_process_group(sub)
    for ranks in ([r] for r in range(n)):  # groups of one
        g = dist.new_group(ranks)
        if rank in ranks:
            t = torch.ones(1) * 5
            dist.all_reduce(t, group=g)
            out["group of one"] = t.tolist()
    return out


def _expected(n):
    """A few values computed here, independent of any backend."""
    want = {}
    vals = [[(j % 3 + r + 1) for j in range(5)] for r in range(n)]
    want["all_reduce sum torch.float32"] = [
        float(sum(v[j] for v in vals)) for j in range(5)]
    want["all_reduce avg torch.float32"] = [
        sum(v[j] for v in vals) / n for j in range(5)]
    want["all_reduce bool sum"] = [True, True, False, True]
    want["all_reduce bool product"] = [False, True, False, False]
    want["all_to_all lists"] = {
        r: [[float(j * 10 + r)] * (j + 1) for j in range(n)]
        for r in range(n)}
    return want


@pytest.fixture(scope="module", params=[2, 3])
def results(request):
    n = request.param
    ours = run_torch_group(n, everything, timeout=240)
    try:
        gloo = run_torch_group(n, everything, backend="gloo", timeout=240)
    except AssertionError as e:
        # The control itself can fail: at world size 3 gloo's own send/recv
        # timed out (60 s) in CI runs here; pyccl's run is still checked
        # against the values computed in this file.
        gloo = e
    return n, ours, gloo


def test_every_call_matches_gloo(results):
    n, ours, gloo = results
    if isinstance(gloo, AssertionError):
        pytest.xfail("the gloo control run failed: %s" % str(gloo).splitlines()[-1])
    for rank in range(n):
        mine, theirs = ours[rank], gloo[rank]
        assert mine["backend"] == "pyccl" and theirs["backend"] == "gloo"
        assert mine["pg_name"] == "pyccl"
        common = set(theirs) - {"backend", "pg_name"}
        assert set(mine) >= common, sorted(common - set(mine))
        diff = {k: (mine[k], theirs[k]) for k in common
                if mine[k] != theirs[k]}
        assert not diff, "rank %d differs from gloo: %r" % (rank, diff)


def test_values_computed_here(results):
    n, ours, _ = results
    want = _expected(n)
    for rank in range(n):
        got = ours[rank]
        for key in ("all_reduce sum torch.float32",
                    "all_reduce avg torch.float32", "all_reduce bool sum",
                    "all_reduce bool product"):
            assert got[key] == want[key], key
        assert got["all_to_all lists"] == want["all_to_all lists"][rank]
        assert got["future value"] == [[float(j % 3 + 1) * 0 + sum(
            j % 3 + r + 1 for r in range(n)) for j in range(4)]]
        assert got["work done"] == [True, True]
        assert got["group of one"] == [5.0]
        if rank in (0, n - 1):
            assert got["subgroup all_reduce"] == [float(n + 1)] * 2
