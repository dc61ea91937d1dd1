"""Start-up of `crm up`: time to /readyz and memory, against a bare FastAPI app in the same run.

Each run starts, as subprocesses on loopback ports with the same interpreter and uvicorn:
- baseline: a bare FastAPI app with one /readyz route, served by ``uvicorn.run``;
- `crm up` on a new database (a fresh temporary folder: migrations create every table);
- `crm up` again on that same database (what a restart costs).
Measured: seconds from spawning the process to the first 200 from GET /readyz, and the
process's resident memory (VmRSS) at that moment. The table shows the median over the runs.
Then one more `crm up` on the existing database is left idle (``--idle`` seconds: nothing may
load on its own) and given its first AI work: an intent classification (the offline
classifier) and a question over the workspace's memory (the embedding model), each timed, with
RSS after it. Targets: ready <= 3 s on an existing database; RSS <= 250 MB until the first AI
work.

Run from the checkout to measure (it is imported from the current directory):
``python -m bench.bench_startup [--runs 3] [--idle 12]``, or against another checkout:
``cd /other/checkout && .venv/bin/python /path/to/bench/bench_startup.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
SECRET_KEY = "bench-startup-secret-key-0123456789abcdef"
TARGET_READY_S = 3.0
TARGET_IDLE_MB = 250.0

BARE_APP = """
import sys
import uvicorn
from fastapi import FastAPI

app = FastAPI()


@app.get("/readyz")
async def readyz() -> dict[str, str]:
    return {"status": "ok"}


uvicorn.run(app, host=sys.argv[1], port=int(sys.argv[2]), log_level="info")
"""


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def http(method: str, url: str, body: object = None, token: str | None = None) -> tuple[int, str]:
    """One HTTP call; (status, text), status 0 when nothing answered."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except (urllib.error.URLError, OSError):
        return 0, ""


@dataclass
class Started:
    """A process started by the benchmark, with when it became ready."""

    popen: subprocess.Popen[bytes]
    log: Path
    base: str
    ready_s: float = 0.0
    rss_ready: float = 0.0

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-15:])


@dataclass
class Bench:
    """Starts and stops the measured processes; everything they write goes under ``work``."""

    checkout: Path
    work: Path
    limit: float
    running: list[Started] = field(default_factory=list)

    def env(self, data: Path, port: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
        env.update(
            PYTHONPATH=str(self.checkout),
            CRM_DATABASE_URL=f"sqlite://{data / 'crm.sqlite3'}",
            CRM_MEDIA_DIR=str(data / "media"),
            CRM_AI_INDEX_DIR=str(data / "ai-index"),
            CRM_SECRET_KEY=SECRET_KEY,
            CRM_HOST=HOST,
            CRM_PORT=str(port),
        )
        return env

    def start(self, name: str, argv: list[str], env: dict[str, str], port: int) -> Started:
        """Spawn ``argv`` and wait for GET /readyz to answer 200."""
        log = self.work / f"{name}.log"
        base = f"http://{HOST}:{port}"
        with log.open("ab") as out:
            began = time.perf_counter()
            # cwd: an empty folder, so no .env file or ./data of the checkout is picked up.
            popen = subprocess.Popen(
                argv, env=env, cwd=self.work, stdout=out, stderr=subprocess.STDOUT
            )
        started = Started(popen, log, base)
        self.running.append(started)
        deadline = began + self.limit
        while time.perf_counter() < deadline:
            if popen.poll() is not None:
                raise RuntimeError(f"{name} exited ({popen.returncode}):\n{started.tail()}")
            status, _ = http("GET", f"{base}/readyz")
            if status == 200:
                started.ready_s = time.perf_counter() - began
                started.rss_ready = rss_mb(popen.pid)
                return started
            time.sleep(0.02)
        raise RuntimeError(f"{name} not ready within {self.limit:.0f}s:\n{started.tail()}")

    def stop(self, started: Started) -> None:
        """SIGTERM (a graceful stop), then SIGKILL after 20 s."""
        if started.popen.poll() is None:
            started.popen.send_signal(signal.SIGTERM)
            try:
                started.popen.wait(20)
            except subprocess.TimeoutExpired:
                started.popen.kill()
                started.popen.wait()
        if started in self.running:
            self.running.remove(started)

    def stop_all(self) -> None:
        for started in list(self.running):
            self.stop(started)

    def bare(self, name: str) -> Started:
        port = free_port()
        env = self.env(self.work, port)
        return self.start(name, [sys.executable, "-c", BARE_APP, HOST, str(port)], env, port)

    def crm_up(self, name: str, data: Path) -> Started:
        port = free_port()
        argv = [sys.executable, "-m", "crm.cli", "up", "--log-level", "warning"]
        return self.start(name, argv, self.env(data, port), port)

    def crm(self, data: Path, *args: str) -> str:
        """A `crm` command on ``data`` (the service not running); its stdout."""
        done = subprocess.run(
            [sys.executable, "-m", "crm.cli", *args],
            env=self.env(data, free_port()),
            cwd=self.work,
            capture_output=True,
            text=True,
            timeout=self.limit,
            check=True,
        )
        return done.stdout


def timed(call: Callable[[], tuple[int, str]]) -> tuple[float, int, str]:
    """Seconds a call took, with its status and body."""
    began = time.perf_counter()
    status, text = call()
    return time.perf_counter() - began, status, text


def median(values: list[float]) -> str:
    return f"{statistics.median(values):7.2f}" if values else "      -"


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--idle", type=float, default=12.0, help="seconds left idle after ready")
    parser.add_argument("--limit", type=float, default=120.0, help="seconds a start may take")
    parser.add_argument("--checkout", type=Path, default=Path.cwd(), help="the code to measure")
    args = parser.parse_args()
    checkout = args.checkout.resolve()
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        bench = Bench(checkout, Path(tmp), args.limit)
        where = subprocess.run(
            [sys.executable, "-c", "import crm; print(crm.__file__)"],
            env=bench.env(Path(tmp), 0),
            cwd=tmp,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        print(f"measuring {where} ({args.runs} runs, 2 stops per `crm up` run)")
        rows: dict[str, tuple[list[float], list[float]]] = {
            "bare FastAPI app (baseline)": ([], []),
            "crm up, new database": ([], []),
            "crm up, existing database": ([], []),
        }
        try:
            for run in range(args.runs):
                data = Path(tmp) / f"data-{run}"
                data.mkdir()
                for label in rows:
                    if label.startswith("bare"):
                        started = bench.bare(f"bare-{run}")
                    elif "new" in label:
                        started = bench.crm_up(f"new-{run}", data)
                    else:
                        started = bench.crm_up(f"again-{run}", data)
                    rows[label][0].append(started.ready_s)
                    rows[label][1].append(started.rss_ready)
                    bench.stop(started)
            idle = idle_and_first_ai(bench, Path(tmp) / "data-0", args.idle)
        finally:
            bench.stop_all()
    base_ready = statistics.median(rows["bare FastAPI app (baseline)"][0])
    print()
    print(f"{'':32} {'ready s':>7} {'x bare':>7} {'RSS MB':>7}   (median of {args.runs})")
    for label, (ready, rss) in rows.items():
        ratio = statistics.median(ready) / base_ready
        print(f"{label:32} {median(ready)} {ratio:7.1f} {median(rss)}")
    print()
    print(f"{'crm up, existing database':32} {'s':>7} {'RSS MB':>7}")
    for label, seconds, rss in idle:
        print(f"{label:32} {seconds:7.2f} {rss:7.0f}")
    ready = statistics.median(rows["crm up, existing database"][0])
    idle_rss = max(rss for label, _, rss in idle[:2])
    print()
    print(f"target ready <= {TARGET_READY_S:.0f} s on an existing database: {ready:.2f} s")
    print(f"target RSS <= {TARGET_IDLE_MB:.0f} MB until the first AI work: {idle_rss:.0f} MB")


def idle_and_first_ai(bench: Bench, data: Path, idle: float) -> list[tuple[str, float, float]]:
    """Ready, idle, then the first AI work: (what, seconds, RSS MB after it)."""
    created = json.loads(bench.crm(data, "tenants", "create", "Bench", "--json"))
    token = created["api_key"]
    service = bench.crm_up("idle", data)
    pid = service.popen.pid
    out = [("ready", service.ready_s, service.rss_ready)]
    time.sleep(idle)
    out.append((f"idle {idle:.0f} s after ready", idle, rss_mb(pid)))
    api = f"{service.base}/api/v1"
    seconds, status, text = timed(
        lambda: http("POST", f"{api}/ai/classify", {"text": "How much is it?"}, token)
    )
    if status != 200:
        raise RuntimeError(f"classify answered {status}: {text[:300]}")
    out.append(("first classify (offline intent)", seconds, rss_mb(pid)))
    seconds, status, text = timed(
        lambda: http("POST", f"{api}/ai/ask", {"question": "What did we offer?"}, token)
    )
    if status != 200:
        raise RuntimeError(f"ask answered {status}: {text[:300]}")
    out.append(("first ask (embedding model)", seconds, rss_mb(pid)))
    bench.stop(service)
    return out


if __name__ == "__main__":
    main()
