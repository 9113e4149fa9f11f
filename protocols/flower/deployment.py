"""A real Flower deployment on loopback: a SuperLink and SuperNodes as separate processes.

:class:`LocalDeployment` starts ``flower-superlink`` and ``flower-supernode`` processes
(insecure transport, loopback only, free ports, a private ``FLWR_HOME``), submits runs
with ``flwr run``, can kill a SuperNode in the middle of a round, and stops everything
on exit -- whatever happens, every process it started and every process those started is
terminated (process groups first, then any descendant found under ``/proc``)::

    with LocalDeployment(app_dir, num_supernodes=4) as deployment:
        run = deployment.run({"result-path": "out.json"})
        deployment.wait_for_file("out.json", timeout=120, on_line=print_progress)

With ``simulation=True`` the SuperLink runs Flower's simulation runtime instead
(``flower-superlink --simulation``) and ``num_supernodes`` virtual SuperNodes are
created for each run (``flwr run --federation-config num-supernodes=N``): Flower's
recommended way to simulate, in place of the deprecated ``flwr.simulation.run_simulation``.
Every process writes its log into the work directory; ``on_line`` callbacks see each new
line as it is written.

Nothing reaches the network: telemetry and update checks are switched off, and run-time
installation of app dependencies is disabled (the app's dependencies must already be
installed in this Python environment, as ``secagg-fl[flower]`` is).

This is a development and test harness. A production deployment runs the same two
commands on separate machines with TLS and SuperNode authentication (see Flower's
documentation); the apps do not change.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from secagg.errors import InvalidParameterError, SecAggError

__all__ = [
    "LocalDeployment",
    "DeploymentError",
    "LogLineHandler",
    "free_port",
    "process_alive",
    "OFFLINE_ENVIRONMENT",
]

#: Called with a process' name (``superlink``, ``supernode-2``, ``run-0``) and one line of its log.
LogLineHandler = Callable[[str, str], None]

#: Environment that keeps every Flower process off the network and quick to react.
OFFLINE_ENVIRONMENT: Mapping[str, str] = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    # SuperExec polls its node for new tasks; the default (1 s) adds a second per stage.
    "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "PYTHONUNBUFFERED": "1",
}

_LOOPBACK = "127.0.0.1"
_STOP_GRACE_S = 5.0


class DeploymentError(SecAggError):
    """A Flower process failed to start, exited early or did not finish in time."""


def free_port() -> int:
    """A TCP port on the loopback interface that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((_LOOPBACK, port)) == 0


def _descendants(pid: int) -> list[int]:
    """PIDs of every descendant of ``pid`` (Linux ``/proc``; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name may contain spaces and parentheses: split after the last ")"
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie -- exited, not yet reaped -- does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return not Path("/proc").is_dir()
    return stat[stat.rfind(")") + 2 :].split()[0] != "Z"


def _signal_pid(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


@dataclass
class _Managed:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path


class _LogFollower:
    """Hands every complete new line of a set of log files to a callback, once."""

    def __init__(self) -> None:
        self._offsets: dict[Path, int] = {}
        self._partial: dict[Path, bytes] = {}

    def poll(self, logs: Sequence[tuple[str, Path]], on_line: LogLineHandler) -> None:
        for name, path in logs:
            try:
                with open(path, "rb") as log:
                    log.seek(self._offsets.get(path, 0))
                    chunk = log.read()
            except OSError:
                continue
            if not chunk:
                continue
            self._offsets[path] = self._offsets.get(path, 0) + len(chunk)
            *lines, rest = (self._partial.pop(path, b"") + chunk).split(b"\n")
            if rest:
                self._partial[path] = rest
            for line in lines:
                on_line(name, line.decode("utf-8", errors="replace").rstrip("\r"))


def _stop_all(managed: list[_Managed], sig: signal.Signals = signal.SIGTERM) -> set[int]:
    """Stop processes, their process groups and every descendant; escalate to SIGKILL.

    All are signalled at once and share one grace period, so stopping many processes takes
    no longer than stopping one. Returns every pid it signalled.
    """
    families = {id(m): _descendants(m.process.pid) for m in managed}
    signalled = {m.process.pid for m in managed}
    for m in managed:
        _signal_group(m.process.pid, sig)
        for pid in families[id(m)]:
            _signal_pid(pid, sig)
    deadline = time.monotonic() + (_STOP_GRACE_S if sig != signal.SIGKILL else 2.0)
    for m in managed:
        with contextlib.suppress(subprocess.TimeoutExpired):
            m.process.wait(timeout=max(0.0, deadline - time.monotonic()))
    for m in managed:
        family = families[id(m)] + _descendants(m.process.pid)
        signalled.update(family)
        _signal_group(m.process.pid, signal.SIGKILL)
        for pid in family:
            _signal_pid(pid, signal.SIGKILL)
    for m in managed:
        with contextlib.suppress(subprocess.TimeoutExpired):
            m.process.wait(timeout=2.0)
    # a killed process may take a moment to be gone (Ray's, unmapping a large object
    # store): return only once none of them runs, or after a bounded wait
    deadline = time.monotonic() + _STOP_GRACE_S
    while time.monotonic() < deadline and any(process_alive(pid) for pid in signalled):
        time.sleep(0.05)
    return signalled


class LocalDeployment:
    """A SuperLink and ``num_supernodes`` SuperNodes on loopback, started and stopped here.

    Args:
        app_dir: the Flower app (a directory with a ``pyproject.toml`` declaring
            ``[tool.flwr.app.components]``).
        num_supernodes: how many SuperNodes to start (each its own process); with
            ``simulation``, how many virtual SuperNodes each run simulates.
        node_configs: per SuperNode, its ``--node-config`` entries (default
            ``partition-id=i num-partitions=N``; not with ``simulation``, whose virtual
            SuperNodes get ``partition-id`` and ``num-partitions`` from Flower).
        workdir: where logs and ``FLWR_HOME`` go (default: a fresh temporary directory,
            removed on exit unless ``keep_workdir``).
        env: extra environment variables for every process.
        startup_timeout: seconds to wait for the SuperLink to listen.
        keep_workdir: keep the working directory (logs) after exit.
        simulation: run the SuperLink's simulation runtime (Ray) instead of starting
            SuperNode processes.
        announce: called with one line for every process started or stopped (its pid
            and log file), e.g. ``print``.

    Raises:
        InvalidParameterError: no such app directory or a bad count.
        DeploymentError: a process exited during start-up.
    """

    def __init__(
        self,
        app_dir: str | os.PathLike[str],
        *,
        num_supernodes: int = 3,
        node_configs: Sequence[Mapping[str, str | int | float]] | None = None,
        workdir: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        startup_timeout: float = 60.0,
        keep_workdir: bool = False,
        simulation: bool = False,
        announce: Callable[[str], None] | None = None,
    ) -> None:
        self.app_dir = Path(app_dir).resolve()
        if not (self.app_dir / "pyproject.toml").is_file():
            raise InvalidParameterError(f"{self.app_dir} is not a Flower app (no pyproject.toml)")
        if not isinstance(num_supernodes, int) or num_supernodes < 1:
            raise InvalidParameterError(
                f"num_supernodes must be a positive int, got {num_supernodes!r}"
            )
        if node_configs is not None and len(node_configs) != num_supernodes:
            raise InvalidParameterError("node_configs needs one entry per SuperNode")
        if simulation and node_configs is not None:
            raise InvalidParameterError(
                "node_configs are for SuperNode processes, not for a simulation"
            )
        self.num_supernodes = num_supernodes
        self.simulation = bool(simulation)
        self._announce = announce
        self._follower = _LogFollower()
        self.node_configs: list[Mapping[str, str | int | float]] = (
            list(node_configs)
            if node_configs is not None
            else [
                {"partition-id": i, "num-partitions": num_supernodes} for i in range(num_supernodes)
            ]
        )
        self._own_workdir = workdir is None
        self._keep_workdir = keep_workdir
        self.workdir = Path(tempfile.mkdtemp(prefix="secagg-flwr-") if workdir is None else workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.startup_timeout = startup_timeout
        self.superlink_port = 0
        self.supernode_ports: list[int] = []
        self._superlink: _Managed | None = None
        self._supernodes: list[_Managed | None] = []
        self._runs: list[_Managed] = []
        #: every pid stopped so far (started processes and their descendants)
        self.stopped_pids: set[int] = set()
        self._previous_sigterm: Any = None
        self._env = self._environment(env)

    # -- set-up ------------------------------------------------------------------------

    def _environment(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        env = dict(os.environ)
        env.update(OFFLINE_ENVIRONMENT)
        home = self.workdir / "flwr-home"
        home.mkdir(parents=True, exist_ok=True)
        env["FLWR_HOME"] = str(home)
        # The Flower executables spawn each other by name: put this interpreter's first.
        bindir = str(Path(sys.executable).parent)
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
        if extra:
            env.update(extra)
        return env

    def _write_cli_config(self) -> None:
        config = (
            '[superlink]\ndefault = "local"\n\n'
            f'[superlink.local]\naddress = "{_LOOPBACK}:{self.superlink_port}"\ninsecure = true\n'
        )
        (Path(self._env["FLWR_HOME"]) / "config.toml").write_text(config)

    def _spawn(self, name: str, argv: Sequence[str], cwd: Path | None = None) -> _Managed:
        exe = shutil.which(argv[0], path=self._env["PATH"])
        if exe is None:
            raise DeploymentError(
                f"{argv[0]} not found; install the flower extra: pip install 'secagg-fl[flower]'"
            )
        log_path = self.workdir / f"{name}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [exe, *argv[1:]],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=str(cwd or self.workdir),
                env=self._env,
                start_new_session=True,  # its own process group, so it can be killed whole
            )
        if self._announce is not None:
            self._announce(
                f"started {name} (pid {process.pid}, {Path(argv[0]).name}), log {log_path}"
            )
        return _Managed(name, process, log_path)

    def start(self) -> LocalDeployment:
        """Start the SuperLink, wait until it listens, then start the SuperNodes.

        In the main thread, SIGTERM is turned into ``SystemExit`` until :meth:`close`, so
        that a terminated test or script still stops every process it started.
        """
        if threading.current_thread() is threading.main_thread():
            self._previous_sigterm = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        try:
            self.superlink_port = free_port()
            self._write_cli_config()
            self._superlink = self._spawn(
                "superlink",
                [
                    "flower-superlink",
                    "--insecure",
                    "--host",
                    _LOOPBACK,
                    "--port",
                    str(self.superlink_port),
                    "--disable-runtime-dependency-installation",
                    *(["--simulation"] if self.simulation else []),
                ],
            )
            self._wait_listening(self._superlink, self.superlink_port)
            if self._announce is not None:
                self._announce(f"superlink listens on {_LOOPBACK}:{self.superlink_port}")
            for i, node_config in enumerate([] if self.simulation else self.node_configs):
                port = free_port()
                self.supernode_ports.append(port)
                config = " ".join(f"{k}={_toml_value(v)}" for k, v in node_config.items())
                self._supernodes.append(
                    self._spawn(
                        f"supernode-{i}",
                        [
                            "flower-supernode",
                            "--insecure",
                            "--superlink",
                            f"{_LOOPBACK}:{self.superlink_port}",
                            "--host",
                            _LOOPBACK,
                            "--port",
                            str(port),
                            "--node-config",
                            config,
                        ],
                    )
                )
        except BaseException:
            self.close()
            raise
        return self

    def _wait_listening(self, managed: _Managed, port: int) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if managed.process.poll() is not None:
                raise DeploymentError(
                    f"{managed.name} exited during start-up:\n{self.tail(managed.name)}"
                )
            if _port_open(port):
                return
            time.sleep(0.2)
        raise DeploymentError(
            f"{managed.name} did not listen on port {port} within {self.startup_timeout} s"
        )

    # -- runs and faults ---------------------------------------------------------------

    def run(
        self,
        run_config: Mapping[str, str | int | float | bool] | None = None,
        *,
        federation_config: Mapping[str, str | int | float | bool] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Submit the app with ``flwr run`` (logs streamed to ``run-K.log``); returns the process.

        Args:
            run_config: overrides of the app's ``[tool.flwr.app.config]``.
            federation_config: with ``simulation``, overrides of the simulation runtime
                (``num-supernodes`` defaults to ``num_supernodes``; e.g.
                ``client-resources-num-cpus``, ``init-args-num-cpus``).
        """
        if federation_config is not None and not self.simulation:
            raise InvalidParameterError(
                "federation_config configures a simulation (simulation=True)"
            )
        if self._superlink is None:
            raise DeploymentError("start() the deployment first")
        argv = ["flwr", "run", str(self.app_dir), "local", "--stream"]
        index = len(self._runs)
        if run_config:
            # a TOML file, so that values may contain spaces
            overrides = self.workdir / f"run-{index}-config.toml"
            overrides.write_text(
                "".join(f"{k} = {_toml_value(v)}\n" for k, v in run_config.items())
            )
            argv += ["--run-config", str(overrides)]
        if self.simulation:
            federation = {"num-supernodes": self.num_supernodes, **(federation_config or {})}
            argv += [
                "--federation-config",
                " ".join(f"{k}={_toml_value(v)}" for k, v in federation.items()),
            ]
        managed = self._spawn(f"run-{index}", argv, cwd=self.app_dir)
        self._runs.append(managed)
        return managed.process

    def kill_supernode(self, index: int, sig: signal.Signals = signal.SIGKILL) -> None:
        """Kill SuperNode ``index`` with everything it started (a crash, by default)."""
        if not 0 <= index < len(self._supernodes):
            raise InvalidParameterError(f"no SuperNode {index}")
        managed = self._supernodes[index]
        if managed is not None:
            self.stopped_pids |= _stop_all([managed], sig)
            self._supernodes[index] = None

    def supernode_alive(self, index: int) -> bool:
        """Whether SuperNode ``index`` is still running."""
        managed = self._supernodes[index] if 0 <= index < len(self._supernodes) else None
        return managed is not None and managed.process.poll() is None

    def check_alive(self) -> None:
        """Raise :class:`DeploymentError` if the SuperLink has exited."""
        if self._superlink is None or self._superlink.process.poll() is not None:
            raise DeploymentError(f"the SuperLink is not running:\n{self.tail('superlink')}")

    def wait_for_file(
        self, *paths: str | os.PathLike[str], timeout: float, on_line: LogLineHandler | None = None
    ) -> Path:
        """Wait until one of ``paths`` exists (written by an app); returns it.

        Args:
            paths: the files to wait for.
            timeout: seconds.
            on_line: called meanwhile with every new line of every log, as
                ``on_line(process_name, line)`` (see :meth:`follow_logs`).

        Raises:
            DeploymentError: none appeared in time, or the SuperLink exited meanwhile
                (the message ends with the tail of every log).
        """
        targets = [Path(p) for p in paths]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs_over = bool(self._runs) and all(r.process.poll() is not None for r in self._runs)
            if on_line is not None:
                self.follow_logs(on_line)
            for target in targets:
                if target.exists():
                    if on_line is not None:
                        self.follow_logs(on_line)
                    return target
            if runs_over:  # every submitted run ended without writing the file
                raise DeploymentError(
                    f"the run ended without writing {targets[0]}\n{self.logs_summary()}"
                )
            self.check_alive()
            time.sleep(0.2)
        names = ", ".join(str(t) for t in targets)
        raise DeploymentError(f"{names} did not appear within {timeout} s\n{self.logs_summary()}")

    def wait_for_runs(self, timeout: float, on_line: LogLineHandler | None = None) -> bool:
        """Wait until every submitted ``flwr run --stream`` has ended (its run finished and
        its log is complete); returns whether they all did within ``timeout`` seconds.

        An app's result file can appear before the last lines of its log reach the
        stream: call this after :meth:`wait_for_file` to see them all.
        """
        deadline = time.monotonic() + timeout
        while True:
            ended = all(r.process.poll() is not None for r in self._runs)
            if on_line is not None:
                self.follow_logs(on_line)
            if ended or time.monotonic() >= deadline:
                return ended
            time.sleep(0.2)

    # -- logs --------------------------------------------------------------------------

    def log_paths(self) -> dict[str, Path]:
        """Every log written so far, by process name (``superlink``, ``supernode-i``, ``run-k``)."""
        return {path.stem: path for path in sorted(self.workdir.glob("*.log"))}

    def follow_logs(self, on_line: LogLineHandler) -> None:
        """Call ``on_line(process_name, line)`` for every line logged since the last call.

        Only complete lines are passed on; a line still being written waits for the next
        call. Each line is passed once over the deployment's life.
        """
        self._follower.poll(list(self.log_paths().items()), on_line)

    def tail(self, name: str, lines: int = 30) -> str:
        """The last ``lines`` lines of one process' log.

        ``name`` is ``superlink``, ``supernode-0``, ... or ``run-0``, ...
        """
        path = self.workdir / f"{name}.log"
        if not path.exists():
            return ""
        text = path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def logs_summary(self, lines: int = 15) -> str:
        """The tail of every log, for error messages."""
        names = ["superlink"] + [
            f"supernode-{i}" for i in range(0 if self.simulation else self.num_supernodes)
        ]
        names += [f"run-{i}" for i in range(len(self._runs))]
        return "\n".join(f"--- {n} ---\n{self.tail(n, lines)}" for n in names)

    # -- tear-down ---------------------------------------------------------------------

    def close(self) -> None:
        """Stop every process (runs, SuperNodes, SuperLink) and remove the work directory."""
        managed = list(reversed(self._runs))
        managed += [m for m in self._supernodes if m is not None]
        if self._superlink is not None:
            managed.append(self._superlink)
        self.stopped_pids |= _stop_all(managed)
        if (
            self._previous_sigterm is not None
            and threading.current_thread() is threading.main_thread()
        ):
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None
        if managed and self._announce is not None:
            self._announce(f"stopped {len(managed)} process(es) and everything they started")
        self._runs.clear()
        self._supernodes = [None] * len(self._supernodes)
        self._superlink = None
        if self._own_workdir and not self._keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalDeployment:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _toml_value(value: str | int | float | bool) -> str:
    """A node/run config value in TOML syntax (strings quoted)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
