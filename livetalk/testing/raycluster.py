"""A throwaway Ray cluster on 127.0.0.1 for tests and benchmarks of ``livetalk script --ray``.

:class:`LocalRayCluster` runs ``ray start --head --block`` so that nothing it starts listens on
or talks to an address outside 127.0.0.0/8:

- node address 127.0.0.1, in Ray's single-machine mode (``LOOPBACK_ENV`` of
  :mod:`livetalk.scenarios.cluster`), so the GCS, raylet, object manager, agents and workers
  bind and connect on loopback only; every port picked free on 127.0.0.1;
- no dashboard, usage statistics off, and the "usage is disabled" notice Ray posts anyway for
  ``ray start`` clusters sent to a closed loopback port;
- a private ``HOME`` holding an empty ``ray_bootstrap_config.yaml``: without that file Ray's
  API server process probes the cloud metadata address (169.254.169.254) and
  ``metadata.google.internal`` once at start-up, usage statistics or not;
- token authentication with a throwaway token (in :attr:`driver_env`, not in any file);
- a private temporary folder, removed by :meth:`stop`.

Every process of the cluster carries a marker in its environment, so :meth:`pids` finds
them (and :meth:`stop` ends only them). With ``trace=True`` the cluster runs under
``strace`` and :meth:`outside_loopback` lists every ``connect`` to an address outside
loopback (and every ``bind`` to a specific one): a short-lived attempt that ``ss`` would miss,
such as a DNS query or a metadata probe. Datagrams sent without ``connect`` are not traced
(tracing every RTP packet slows the calls); a socket that could send them is bound to a
non-loopback address, which ``ss`` shows::

    with LocalRayCluster(num_cpus=2) as cluster:
        os.environ.update(cluster.driver_env)
        results = await run_on_ray(scenarios, address=cluster.address, local=True)
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from livetalk.errors import RayClusterError
from livetalk.scenarios.cluster import LOOPBACK_ENV

__all__ = ["LocalRayCluster", "RayClusterError", "TASK_TITLE"]

TASK_TITLE = "ray::livetalk_scenarios"
"""The process title of a worker running a livetalk scenario task."""
_MARK = "LIVETALK_RAY_CLUSTER"
_READY = b"block forever"  # what ray start --block prints once everything runs
_INET = re.compile(r'inet_(?:addr|pton)\((?:AF_INET6?, )?"(?P<ip>[^"]+)"')



def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class LocalRayCluster:
    """A Ray head node on 127.0.0.1 (see the module docstring).

    Args:
        num_cpus: the CPUs it offers to tasks.
        trace: run it under ``strace`` to record its network system calls.
        start_timeout: seconds to wait for it to start.
    """

    def __init__(self, *, num_cpus: int = 2, trace: bool = False,
                 start_timeout: float = 120.0) -> None:
        self.num_cpus = num_cpus
        self.trace = trace and shutil.which("strace") is not None
        self.start_timeout = start_timeout
        self.marker = secrets.token_hex(8)
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.driver_env: dict[str, str] = {
            **LOOPBACK_ENV, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
        """Set these in the driver's environment before it imports Ray."""
        self.temp_dir = ""
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def trace_file(self) -> Path:
        """Where ``strace`` writes (when tracing)."""
        return Path(self.temp_dir) / "net.trace"

    def start(self) -> None:
        """Start the head node and wait until it runs.

        Raises:
            RayClusterError: ``ray start`` failed or did not finish in time.
        """
        self.temp_dir = tempfile.mkdtemp(prefix="ltray-", dir="/tmp")  # short socket paths
        home = Path(self.temp_dir) / "home"
        home.mkdir()
        (home / "ray_bootstrap_config.yaml").write_text("{}\n")
        ray = str(Path(sys.executable).parent / "ray")
        ports = [f"{flag}={_free_port()}" for flag in (
            "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port",
            "--metrics-export-port", "--runtime-env-agent-port")]
        command = [ray, "start", "--head", "--block", f"--port={self.port}",
                   "--node-ip-address=127.0.0.1", f"--num-cpus={self.num_cpus}",
                   "--include-dashboard=false", "--disable-usage-stats",
                   f"--temp-dir={self.temp_dir}", *ports]
        if self.trace:
            command = ["strace", "-f", "-qq", "--seccomp-bpf", "-e",
                       "trace=connect,bind", "-o", str(self.trace_file),
                       *command]
        env = {**os.environ, **self.driver_env, _MARK: self.marker, "HOME": str(home)}
        log = Path(self.temp_dir) / "start.log"
        with open(log, "wb") as out:
            self._process = subprocess.Popen(command, env=env, stdout=out,
                                             stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        while _READY not in log.read_bytes():
            if self._process.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-2000:]
                self.stop()
                raise RayClusterError(f"ray start did not come up:\n{tail}")
            time.sleep(0.2)

    def pids(self) -> set[int]:
        """Every live process of this cluster (found by the marker in its environment)."""
        needle = f"{_MARK}={self.marker}".encode()
        found = set()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if needle in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"):
                    found.add(int(entry))
            except OSError:
                continue
        return found

    def busy_workers(self) -> list[int]:
        """Worker processes running a livetalk scenario task right now."""
        return [pid for pid in self.pids() if _title(pid) == TASK_TITLE]

    def outside_loopback(self) -> list[str]:
        """Traced ``connect`` calls to an IP address outside loopback, and ``bind`` calls to
        a specific one (a bind to the unspecified address only picks a port; one that
        listens shows in ``ss``); empty when not tracing."""
        if not self.trace or not self.trace_file.exists():
            return []
        bad = []
        for line in self.trace_file.read_text(errors="replace").splitlines():
            binding = " bind(" in line
            for match in _INET.finditer(line):
                ip = _ip(match["ip"])
                if ip is None or not (ip.is_loopback or (binding and ip.is_unspecified)):
                    bad.append(line)
                    break
        return bad

    def stop(self) -> None:
        """Stop the cluster (``ray start`` ends what it started; leftovers of this cluster
        are killed by pid) and remove its folder."""
        process = self._process
        if process is not None and process.poll() is None:
            target = self._ray_start_pid() or process.pid
            os.kill(target, signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._process = None

    def remove(self) -> None:
        """Delete the cluster's folder (logs, the trace)."""
        if self.temp_dir:
            shutil.rmtree(self.temp_dir, ignore_errors=True)

    def _ray_start_pid(self) -> int | None:
        """The ``ray start`` process (strace's child when tracing)."""
        assert self._process is not None
        if not self.trace:
            return self._process.pid
        try:
            children = Path(f"/proc/{self._process.pid}/task/{self._process.pid}/children")
            first = children.read_text().split()
        except OSError:
            return None
        return int(first[0]) if first else None

    def __enter__(self) -> LocalRayCluster:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
        self.remove()


def _title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return ""
