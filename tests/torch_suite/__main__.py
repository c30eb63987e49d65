"""Runs torch's distributed suite for gloo and pyccl at each world size and
prints the counts side by side (see the package docstring).

    python -m tests.torch_suite [--world-sizes 2,3] [--backends gloo,pyccl]
                                [-k SUBSTRING]... [--subset ci]
                                [--out-dir DIR] [--timeout S]

Exit status 0 when every case gloo passes also passes with pyccl, 1 when
one does not (they are listed), 2 on bad arguments.
"""
import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
from typing import Dict, List

OUTCOMES = ("passed", "failed", "error", "skipped")


def run_config(backend: str, world_size: int, out: str, keys: List[str],
               cases_file: str, timeout: int, log: str,
               run: bool = True) -> Dict[str, dict]:
    env = dict(os.environ, PYCCL_SUITE_BACKEND=backend,
               WORLD_SIZE=str(world_size), PYTHONWARNINGS="ignore")
    env.pop("TEMP_DIR", None)
    cmd = [sys.executable, "-m", "tests.torch_suite.worker", "--out", out,
           "--timeout", str(timeout)]
    for k in keys:
        cmd += ["-k", k]
    if cases_file:
        cmd += ["--cases", cases_file]
    if run:  # the worker resumes: cases already in ``out`` are kept
        with open(log, "a") as logf:
            subprocess.run(cmd, env=env, stdout=logf, stderr=logf,
                           cwd=os.path.dirname(os.path.dirname(
                               os.path.dirname(os.path.abspath(__file__)))))
    results = {}
    if os.path.exists(out):
        with open(out) as f:
            for line in f:
                rec = json.loads(line)
                results[rec["case"]] = rec
    return results


def counts(results: Dict[str, dict]) -> collections.Counter:
    return collections.Counter(r["outcome"] for r in results.values())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.torch_suite")
    parser.add_argument("--world-sizes", default="2,3")
    parser.add_argument("--backends", default="gloo,pyccl")
    parser.add_argument("-k", action="append", default=[])
    parser.add_argument("--subset", choices=("ci",), default=None)
    parser.add_argument("--out-dir", default=None)
    parser.add_argument("--timeout", type=int, default=300)
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing: tabulate the results already in "
                             "--out-dir (resumed runs, several machines)")
    args = parser.parse_args(argv)
    sizes = [int(x) for x in args.world_sizes.split(",") if x]
    backends = [b for b in args.backends.split(",") if b]
    out_dir = args.out_dir or tempfile.mkdtemp(prefix="pyccl-suite-")
    os.makedirs(out_dir, exist_ok=True)
    cases_file = ""
    if args.subset == "ci":
        from tests.torch_suite.subsets import CI
        cases_file = os.path.join(out_dir, "cases.txt")
        with open(cases_file, "w") as f:
            f.write("\n".join(CI) + "\n")
    print("results in %s" % out_dir, flush=True)
    table = {}
    for ws in sizes:
        for backend in backends:
            out = os.path.join(out_dir, "%s-ws%d.jsonl" % (backend, ws))
            if not args.report_only:
                print("running %s at world size %d ..." % (backend, ws),
                      flush=True)
            table[backend, ws] = run_config(
                backend, ws, out, args.k, cases_file, args.timeout,
                os.path.join(out_dir, "%s-ws%d.log" % (backend, ws)),
                run=not args.report_only)
    status = 0
    print()
    print("(counted: the cases both backends ran)")
    print("%-12s %-8s" % ("world size", "backend")
          + "".join("%9s" % o for o in OUTCOMES) + "    total")
    for ws in sizes:
        both = None
        for backend in backends:
            cases = set(table[backend, ws])
            both = cases if both is None else both & cases
        for backend in backends:
            c = counts({k: v for k, v in table[backend, ws].items()
                        if k in (both or ())})
            print("%-12d %-8s" % (ws, backend)
                  + "".join("%9d" % c[o] for o in OUTCOMES)
                  + "%9d" % sum(c.values()))
    for ws in sizes:
        if ("gloo", ws) not in table or ("pyccl", ws) not in table:
            continue
        gloo, ours = table["gloo", ws], table["pyccl", ws]
        bad = sorted(case for case, rec in gloo.items()
                     if rec["outcome"] == "passed" and case in ours
                     and ours[case]["outcome"] != "passed")
        unrun = sorted(case for case in gloo if case not in ours)
        if unrun:
            print("\nworld size %d: %d case(s) gloo ran are not run with "
                  "pyccl yet (not counted)" % (ws, len(unrun)))
        extra = sorted(case for case, rec in ours.items()
                       if rec["outcome"] == "passed" and case in gloo
                       and gloo[case]["outcome"] != "passed")
        print("\nworld size %d: %d case(s) pass with gloo but not pyccl%s"
              % (ws, len(bad), ":" if bad else ""))
        for case in bad:
            rec = ours.get(case, {"outcome": "not run", "detail": ""})
            lines = [line for line in rec["detail"].splitlines()
                     if "Error" in line or "Exception" in line] or [""]
            print("  %-60s %s %s" % (case, rec["outcome"],
                                     lines[-1].strip()[:150]))
        if extra:
            print("world size %d: %d case(s) pass with pyccl but not gloo: %s"
                  % (ws, len(extra), ", ".join(extra)))
        if bad:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
