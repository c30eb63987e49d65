"""CPU seconds (user + sys, all threads of a rank) per ring all-reduce,
averaged over N ranks, and the wall time per op: on a shared machine CPU
time per op moves much less with foreign load than wall time, so it is
the better way to compare two builds (docs/observability.md, "Cost").

Run: PYTHONPATH=<checkout> python benchmarks/cpu_per_op.py N BYTES ITERS
(e.g. 2 16e6 40); alternate the builds over several rounds.
"""
import multiprocessing, resource, sys, time, json
import numpy as np

def rank_main(addr, n, r, size, iters, q):
    import pyccl
    with pyccl.Communicator(addr, world_size=n, rank=r, conns_per_peer=1) as c:
        x = np.zeros(size // 4, np.float32)
        for _ in range(3):
            c.all_reduce(x, algorithm="ring")
        c.barrier()
        r0 = resource.getrusage(resource.RUSAGE_SELF); t0 = time.perf_counter()
        for _ in range(iters):
            c.all_reduce(x, algorithm="ring")
        r1 = resource.getrusage(resource.RUSAGE_SELF); t1 = time.perf_counter()
        cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        q.put((r, cpu / iters, (t1 - t0) / iters))

if __name__ == "__main__":
    import pyccl
    n, size, iters = int(sys.argv[1]), int(float(sys.argv[2])), int(sys.argv[3])
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    with pyccl.Master() as m:
        ps = [ctx.Process(target=rank_main, args=(m.address, n, r, size, iters, q)) for r in range(n)]
        [p.start() for p in ps]
        res = sorted(q.get(timeout=600) for _ in ps)
        [p.join() for p in ps]
    print(json.dumps({"cpu_per_op": sum(x[1] for x in res) / n, "wall_per_op": max(x[2] for x in res)}))
