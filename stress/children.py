"""The orchestrator's children: the master and the peers, as asyncio
objects.

Every child is started through :mod:`stress.child` (parent-death signal
first), in a session of its own (a Ctrl-C on the terminal reaches the
orchestrator only, which then ends every child itself), with the run's
marker in its environment (:mod:`stress.procs`).  A peer gets one end of
a socketpair as its report channel (passed by fd number); its stdout and
stderr go to its log file, whose tail is printed with a violation.
"""
from __future__ import annotations

import asyncio
import collections
import json
import os
import re
import signal
import socket
import sys
import time
from typing import Any, Callable, Deque, Dict, List, Optional

from stress.procs import PARENT_ENV, RUN_ENV, kill_quietly
from stress.wire import FrameDecoder, FrameError, encode


def child_env(token: str, extra: Optional[Dict[str, str]] = None
              ) -> Dict[str, str]:
    """The environment of every child: this one, the run marker, the
    orchestrator's pid, and the checkout on the path (so ``stress`` is
    importable without being installed)."""
    env = dict(os.environ)
    env[RUN_ENV] = token
    env[PARENT_ENV] = str(os.getpid())
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"]
                                if env.get("PYTHONPATH") else "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    if extra:
        env.update(extra)
    return env


def log_tail(path: str, lines: int = 15) -> List[str]:
    """The last lines of a log file (empty if unreadable)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 16384))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return data.splitlines()[-lines:]


def describe_status(rc: Optional[int]) -> str:
    if rc is None:
        return "still running"
    if rc < 0:
        try:
            return "killed by %s" % signal.Signals(-rc).name
        except ValueError:
            return "killed by signal %d" % -rc
    return "exit status %d" % rc


class _Reports(asyncio.Protocol):
    """The orchestrator's end of a peer's report channel."""

    def __init__(self, peer: "PeerProc") -> None:
        self.peer = peer
        self.decoder = FrameDecoder()
        self.transport: Optional[asyncio.Transport] = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.decoder.feed(data)
        try:
            for msg in self.decoder.messages():
                self.peer.on_message(self.peer, msg)
        except FrameError as exc:
            self.peer.on_bad_frame(self.peer, str(exc))
            if self.transport is not None:
                self.transport.close()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.transport = None


class PeerProc:
    """One peer process and what the orchestrator knows of it."""

    def __init__(self, pid_: int, joiner: bool, log_path: str) -> None:
        self.id = pid_
        self.joiner = joiner
        self.log_path = log_path
        self.proc: Optional[asyncio.subprocess.Process] = None
        self.pid = 0
        self.protocol: Optional[_Reports] = None
        self.spawned_t = time.monotonic()
        self.last_msg = self.spawned_t
        self.phase = "start"
        self.phase_t = self.spawned_t
        self.join_t = self.spawned_t   # start of the current join
        self.gid: Optional[int] = None
        self.epoch = -1
        self.members: List[int] = []
        self.admitted_t: Optional[float] = None
        self.last_ok_t = 0.0
        self.stopped = False
        self.woken_t: Optional[float] = None
        # The group it was in when it was stopped (faults.py): until it is
        # seen in a newer one, the master has not kept it.
        self.stop_gid: Optional[int] = None
        self.link_fault = False
        self.injected: Optional[str] = None   # kill, stop-kill, leave, ...
        self.bye: Optional[str] = None
        self.bye_t: Optional[float] = None
        self.error: Optional[str] = None
        self.rc: Optional[int] = None
        self.exited = asyncio.Event()
        self.hung = False
        self.ns: Optional[str] = None
        self.host = "127.0.0.1"
        # set by the orchestrator
        self.on_message: Callable[["PeerProc", Dict[str, Any]], None] = \
            lambda p, m: None
        self.on_bad_frame: Callable[["PeerProc", str], None] = \
            lambda p, e: None

    @property
    def alive(self) -> bool:
        return self.rc is None and not self.exited.is_set()

    @property
    def leaving(self) -> bool:
        return self.injected is not None

    def send(self, msg: Dict[str, Any]) -> None:
        proto = self.protocol
        if proto is not None and proto.transport is not None:
            proto.transport.write(encode(msg))

    def signal(self, sig: int) -> bool:
        if self.rc is not None or not self.pid:
            return False
        return kill_quietly(self.pid, sig)

    async def start(self, cmd_prefix: List[str], cfg: Dict[str, Any],
                    env: Dict[str, str]) -> None:
        parent, child = socket.socketpair()
        cfg = dict(cfg, report_fd=child.fileno(), id=self.id,
                   joiner=self.joiner)
        cmd = cmd_prefix + [sys.executable, "-m", "stress.child", "peer",
                            json.dumps(cfg)]
        log = open(self.log_path, "ab")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *cmd, stdin=asyncio.subprocess.DEVNULL, stdout=log,
                stderr=asyncio.subprocess.STDOUT, pass_fds=(child.fileno(),),
                env=env, start_new_session=True)
        finally:
            child.close()
            log.close()
        self.pid = self.proc.pid
        loop = asyncio.get_running_loop()
        _, self.protocol = await loop.create_unix_connection(
            lambda: _Reports(self), sock=parent)

    async def wait(self) -> int:
        assert self.proc is not None
        rc = await self.proc.wait()
        self.rc = rc
        self.exited.set()
        return rc


class MasterProc:
    """``pyccl master`` in a process of its own (restartable at the same
    address); its output goes to a log file and a short memory."""

    def __init__(self, log_path: str, host: str, port: int,
                 cmd_prefix: List[str], env: Dict[str, str]) -> None:
        self.log_path = log_path
        self.host = host
        self.port = port
        self.cmd_prefix = cmd_prefix
        self.env = env
        self.proc: Optional[asyncio.subprocess.Process] = None
        self.lines: Deque[str] = collections.deque(maxlen=200)
        self.starts = 0
        self.killed_by_us = False
        self.rc: Optional[int] = None

    @property
    def address(self) -> str:
        return "%s:%d" % (self.host, self.port)

    async def start(self, timeout: float = 30.0) -> None:
        """Starts it and waits for "listening on"; a port still held by
        the killed master's sockets is tried again for a while."""
        deadline = time.monotonic() + timeout
        while True:
            self.killed_by_us = False
            self.rc = None
            cmd = self.cmd_prefix + [
                sys.executable, "-m", "stress.child", "master", "--host",
                self.host, "--port", str(self.port)]
            self.proc = await asyncio.create_subprocess_exec(
                *cmd, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, env=self.env,
                start_new_session=True)
            self.starts += 1
            listening = await self._read_until_listening(deadline)
            if listening:
                asyncio.get_running_loop().create_task(self._drain())
                return
            rc = await self.proc.wait()
            self.rc = rc
            if time.monotonic() > deadline:
                raise RuntimeError("the master did not start (%s): %s" % (
                    describe_status(rc), " | ".join(list(self.lines)[-5:])))
            await asyncio.sleep(0.2)

    async def _read_until_listening(self, deadline: float) -> bool:
        assert self.proc is not None and self.proc.stdout is not None
        with open(self.log_path, "ab") as log:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                try:
                    line = await asyncio.wait_for(self.proc.stdout.readline(),
                                                  left)
                except asyncio.TimeoutError:
                    return False
                if not line:
                    return False
                log.write(line)
                text = line.decode("utf-8", "replace").rstrip()
                self.lines.append(text)
                m = re.search(r"listening on (\S+)", text)
                if m:
                    self.port = int(m.group(1).rsplit(":", 1)[1])
                    return True

    async def _drain(self) -> None:
        proc = self.proc
        assert proc is not None and proc.stdout is not None
        with open(self.log_path, "ab") as log:
            while True:
                line = await proc.stdout.readline()
                if not line:
                    break
                log.write(line)
                self.lines.append(line.decode("utf-8", "replace").rstrip())
        self.rc = await proc.wait()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def kill(self) -> None:
        if self.proc is None:
            return
        self.killed_by_us = True
        kill_quietly(self.proc.pid, signal.SIGKILL)
        self.rc = await self.proc.wait()

    async def stop(self, grace: float = 5.0) -> None:
        if not self.alive:
            return
        assert self.proc is not None
        self.killed_by_us = True
        kill_quietly(self.proc.pid, signal.SIGTERM)
        try:
            self.rc = await asyncio.wait_for(self.proc.wait(), grace)
        except asyncio.TimeoutError:
            await self.kill()


__all__ = ["PeerProc", "MasterProc", "child_env", "log_tail",
           "describe_status"]
