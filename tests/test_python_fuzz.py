"""Property tests (hypothesis) for the Python-side parsers of untrusted or
user-typed input: master addresses, sizes, keys, the CLI, and the
shared-state election, which reads a table every peer contributes to.
Each must either return a well-formed value or raise the one documented
exception, never anything else."""
import string

import numpy as np
from hypothesis import given, settings, strategies as st

import pyccl
from pyccl.cli import build_parser
from pyccl.communicator import parse_master
from pyccl.argtypes import parse_size
from pyccl.keys import resolve_key
from pyccl.shared_state import _elect

text = st.text(alphabet=string.printable + "\u00e9\u4e2d\x00", max_size=60)


@settings(max_examples=500, deadline=None)
@given(st.one_of(text, st.tuples(text, st.integers()), st.integers(),
                 st.none(), st.binary(max_size=20)))
def test_parse_master(value):
    try:
        host, port = parse_master(value)
    except pyccl.InvalidArgument:
        return
    assert isinstance(host, str) and host
    assert 0 < port <= 65535


@settings(max_examples=500, deadline=None)
@given(text)
def test_parse_size(value):
    try:
        size = parse_size(value)
    except ValueError:
        return
    assert isinstance(size, int) and size >= 0


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=1100), text))
def test_resolve_key(value):
    try:
        key = resolve_key(key=value)
    except pyccl.InvalidArgument:
        return
    assert isinstance(key, bytes) and 16 <= len(key) <= 1024


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(text, st.sampled_from(
    ["master", "demo", "keygen", "bench", "--peers", "--sizes", "--port",
     "--host", "--key-file", "--iters", "-1", "0", "4K,1M", "x"])),
    max_size=6))
def test_cli_arguments(argv):
    try:
        build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse's one way out: usage error, --help
        assert exc.code in (0, 2)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 6), st.integers(1, 3), st.data())
def test_election_is_deterministic_and_picks_a_voted_hash(n, t, data):
    table = np.array(data.draw(st.lists(
        st.lists(st.integers(0, 2**64 - 1), min_size=2 + 2 * t,
                 max_size=2 + 2 * t), min_size=n, max_size=n)),
        dtype=np.uint64)
    # Column 1 is the strategy code; peers may send anything there.
    for i in range(t):
        winner = _elect(table, i)
        again = _elect(table.copy(), i)
        assert winner == again
        if winner is not None:
            assert winner in {int(h) for h in table[:, 2 + 2 * i]}
