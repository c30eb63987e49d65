"""The exception hierarchy and the one code -> exception mapping."""
import builtins
import pickle

import pytest

import pyccl
from pyccl import errors
from pyccl._lib import lib

# (class, code constant, builtin it must also be)
TABLE = [
    (pyccl.InvalidArgument, "CCL_ERR_INVALID_ARG", ValueError),
    (pyccl.OutOfMemory, "CCL_ERR_NOMEM", MemoryError),
    (pyccl.CommIOError, "CCL_ERR_IO", ConnectionError),
    (pyccl.Timeout, "CCL_ERR_TIMEOUT", TimeoutError),
    (pyccl.PeerLost, "CCL_ERR_PEER_LOST", ConnectionError),
    (pyccl.ProtocolError, "CCL_ERR_PROTOCOL", ConnectionError),
    (pyccl.VersionMismatch, "CCL_ERR_VERSION", ConnectionError),
    (pyccl.Mismatch, "CCL_ERR_MISMATCH", ValueError),
    (pyccl.Aborted, "CCL_ERR_ABORTED", RuntimeError),
    (pyccl.MasterUnreachable, "CCL_ERR_MASTER_UNREACHABLE", ConnectionError),
    (pyccl.TooFewPeers, "CCL_ERR_TOO_FEW_PEERS", RuntimeError),
    (pyccl.Closed, "CCL_ERR_CLOSED", RuntimeError),
    (pyccl.InvalidUsage, "CCL_ERR_INVALID_USAGE", RuntimeError),
    (pyccl.AuthError, "CCL_ERR_AUTH", PermissionError),
    (pyccl.Rejected, "CCL_ERR_REJECTED", ConnectionError),
    (pyccl.InternalError, "CCL_ERR_INTERNAL", RuntimeError),
    (pyccl.StillRunning, "CCL_ERR_PENDING", TimeoutError),
    (pyccl.Interrupted, "CCL_ERR_INTERRUPTED", InterruptedError),
]


@pytest.mark.parametrize("cls,const,builtin", TABLE,
                         ids=[t[0].__name__ for t in TABLE])
def test_check_maps_code_to_class(cls, const, builtin):
    code = getattr(lib, const)
    with pytest.raises(cls) as info:
        errors.check(code, "what failed")
    exc = info.value
    assert isinstance(exc, pyccl.CclError)
    assert isinstance(exc, builtin)
    assert exc.code == code
    assert exc.detail == "what failed"
    assert str(exc) == errors.strerror(code) + ": what failed"
    assert cls.default_code == code


def test_every_result_code_has_a_class():
    codes = {getattr(lib, name) for name in dir(lib)
             if name.startswith("CCL_ERR_")}
    assert codes == {cls.default_code for cls, _, _ in TABLE}


def test_check_ok_and_unknown_code():
    errors.check(lib.CCL_OK)
    errors.check(0, "ignored")
    with pytest.raises(pyccl.CclError) as info:
        errors.check(9999)
    assert type(info.value) is pyccl.CclError
    assert info.value.code == 9999
    assert str(info.value) == "unknown error"


def test_python_side_construction():
    exc = pyccl.InvalidArgument("bad count")
    assert exc.code == lib.CCL_ERR_INVALID_ARG
    assert str(exc) == "invalid argument: bad count"
    assert str(pyccl.Closed()) == "communicator closed"
    assert pyccl.Timeout("x", code=lib.CCL_ERR_TIMEOUT).detail == "x"


@pytest.mark.parametrize("cls", [t[0] for t in TABLE],
                         ids=[t[0].__name__ for t in TABLE])
def test_pickle_roundtrip_keeps_code_and_detail(cls):
    exc = cls("detail text")
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is cls
    assert (back.code, back.detail, str(back)) == (exc.code, exc.detail,
                                                    str(exc))


def test_builtin_catch_clauses():
    with pytest.raises(builtins.TimeoutError):
        errors.check(lib.CCL_ERR_TIMEOUT)
    with pytest.raises(ConnectionError):
        errors.check(lib.CCL_ERR_PEER_LOST)
    with pytest.raises(OSError):
        errors.check(lib.CCL_ERR_MASTER_UNREACHABLE)
