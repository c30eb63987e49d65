"""``pyccl bench``: all-reduce timings of pyccl against torch.distributed gloo.

    pyccl bench [--peers 2,4] [--sizes 4,4K,64K,1M,4M,16M,64M,256M]
                [--iters N] [--warmup N] [--no-gloo] [--conns C]
                [--algorithm auto|ring|star] [--spin-us US]
                [--no-restore-input] [--barrier-each-op]
                [--hang-timeout S] [--json PATH]

For each peer count N the benchmark runs two phases, one after the other,
never at the same time (the processes of one phase would steal CPU from
the other's):

1. pyccl: a :class:`~pyccl.Master` in this process and N worker processes
   (multiprocessing "spawn") on 127.0.0.1, each with a
   :class:`~pyccl.Communicator` (default settings unless ``--conns``,
   ``--algorithm``, ``--spin-us`` or ``--no-restore-input`` say
   otherwise);
2. gloo, when torch is importable: N worker processes that join
   ``torch.distributed`` with the "gloo" backend over a TCP store on
   127.0.0.1 that this process hosts.

Both phases run the same loop.  For each size, every worker allocates one
f32 numpy buffer (the gloo tensor is ``torch.from_numpy`` of it, so no
copy) and fills it with small integers; after a barrier of the library
under test it runs blocking in-place sum all-reduces, timing each call
alone with ``time.perf_counter``.  The first op is checked element by
element (the sums are exact); then the buffer is zeroed, and after another
barrier the remaining ops run back to back (zeros stay zeros, which is
checked at the end).  With ``--barrier-each-op`` every op instead gets a
fresh input and a barrier first, and every result is checked; the times
then include the skew with which ranks leave the barrier.  The first
``--warmup`` ops are not counted.  An op's time is its slowest rank's;
the reported time is the median over the timed ops, ``algbw = size /
time`` and ``busbw = algbw * 2 (N - 1) / N`` (the bytes each link carries
in a ring all-reduce), in GB/s (1e9 bytes/s).

Peak memory: for the largest size, each worker takes a baseline after
allocating and filling the buffer (VmRSS, and ru_maxrss), resets the
kernel's peak-RSS mark (``/proc/self/clear_refs``), runs the first
all-reduce of that size and reads the peak again (VmHWM, ru_maxrss).  The
increase is reported as a multiple of the buffer size (max over peers).

A hang -- an op (or barrier) that runs longer than ``--hang-timeout``
seconds, 60 by default -- stops the benchmark with a report of the
library, peer count, size, iteration and rank, as does any error.  The
exit status is 0 on success, 1 on a failure or hang, 2 on bad arguments.

The code, by job:

- :mod:`pyccl.bench.command`: the command line and the run as a whole
  (``main(argv) -> exit status``);
- :mod:`pyccl.bench.wan`: ``pyccl bench --wan``, the wide-area
  benchmark (peers in network namespaces; root only), with
  :mod:`pyccl.bench.wan_report` (its table and targets) and
  :mod:`pyccl.bench.wan_peer` (one of its peer processes);
- :mod:`pyccl.bench.orchestrate`: one phase seen from the parent
  (rendezvous, spawning the peers, collecting reports, spotting hangs);
- :mod:`pyccl.bench.measure`: one peer (joining, the timing loop, the
  checks, the memory probes);
- :mod:`pyccl.bench.tables`: everything printed;
- :mod:`pyccl.bench.summary`: raw reports reduced to rows.

Each module imports only those after it in this list, never one before.
"""
