"""Runs the suite's cases for one backend and one world size (in this
process; each case spawns its ranks) and appends one JSON line per case to
``--out``: ``{"case", "outcome", "seconds", "detail"}``, outcome one of
passed, failed, error, skipped.

    PYCCL_SUITE_BACKEND=pyccl WORLD_SIZE=2 \\
        python -m tests.torch_suite.worker --out results.jsonl [-k NAME]...
"""
import argparse
import json
import os
import sys
import time
import unittest


def case_names(cls) -> list:
    return sorted(unittest.TestLoader().getTestCaseNames(cls))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("-k", action="append", default=[],
                        help="run cases whose name contains this")
    parser.add_argument("--cases", default=None,
                        help="file with exact case names, one a line")
    parser.add_argument("--timeout", type=int, default=300)
    parser.add_argument("--rerun-failed", action="store_true",
                        help="run again the cases --out records as failed "
                             "or error (their old lines are dropped)")
    args = parser.parse_args(argv)
    os.environ["DISTRIBUTED_TESTS_DEFAULT_TIMEOUT"] = str(args.timeout)
    from tests.torch_suite.cases import TestDistBackendWithSpawn as cls

    names = case_names(cls)
    if args.cases:
        with open(args.cases) as f:
            wanted = {line.strip() for line in f if line.strip()}
        names = [n for n in names if n in wanted]
    if args.k:
        names = [n for n in names if any(k in n for k in args.k)]
    done = set()
    if os.path.exists(args.out):  # resume: cases already run are kept
        with open(args.out) as f:
            records = [json.loads(line) for line in f if line.strip()]
        if args.rerun_failed:
            records = [r for r in records
                       if r["outcome"] not in ("failed", "error")]
            with open(args.out, "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in records)
        done = {r["case"] for r in records}
    # The quick collective cases first, the long DDP ones last.
    names = sorted((n for n in names if n not in done),
                   key=lambda n: ("ddp" in n.lower() or "DataParallel" in n
                                  or "model_averager" in n, n))
    with open(args.out, "a") as out:
        for name in names:
            result = unittest.TestResult()
            start = time.monotonic()
            cls(name).run(result)
            took = time.monotonic() - start
            if result.skipped:
                outcome, detail = "skipped", result.skipped[0][1]
            elif result.failures:
                outcome, detail = "failed", result.failures[0][1]
            elif result.errors:
                outcome, detail = "error", result.errors[0][1]
            elif result.expectedFailures:
                outcome, detail = "passed", "expected failure"
            elif result.unexpectedSuccesses:
                outcome, detail = "failed", "unexpected success"
            else:
                outcome, detail = "passed", ""
            out.write(json.dumps({"case": name, "outcome": outcome,
                                  "seconds": round(took, 2),
                                  "detail": detail[-3000:]}) + "\n")
            out.flush()
            print("%-8s %6.1fs %s" % (outcome, took, name), file=sys.stderr,
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
