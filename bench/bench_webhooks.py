"""Signed WhatsApp webhooks on PostgreSQL + Redis: persisted/s and webhook-to-stored latency.

The service runs as in production: `crm up` serves (no embedded worker) and separate
`crm worker` processes take the ingest tasks from the Redis stream and store the messages.
The load generator (aiohttp, keep-alive, bounded in flight) runs in this process.

For each worker setup (1 and 2 `crm worker` processes by default), in a fresh database:
1. warm-up: one webhook from each of the known leads (their contacts and conversations exist);
2. throughput: M signed webhooks as fast as the generator allows; accepted/s (200 answers) and
   persisted/s = M / (first send until the M-th message row exists, polled every 50 ms);
3. latency: a steady open-loop rate (sends on a fixed schedule) for some seconds; per message
   stored_at (message.created_at, set by the worker at insert) - sent_at (wall clock at send).
The baseline, in the same run: a bare FastAPI endpoint that only reads the body, served by
uvicorn with the same flags, hit by the same generator with the same requests.
Run: ``python -m bench.bench_webhooks [--quick]`` (env CRM_BENCH_ADMIN_URL, CRM_BENCH_REDIS_URL).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
import psutil
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from redis.asyncio import Redis

from bench.common import asyncpg_url, create_database, drop_database

HOST = "127.0.0.1"
APP_SECRET = "bench-app-secret"
SECRET_KEY = "bench-secret-key-bench-secret-key-0123456789"
PHONE_ID = "100200300"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
STREAM = "crm:tasks"  # BackboneConfig().stream_name
NEW_LEAD_SHARE = 0.05  # the rest come from leads whose contact and conversation exist
TARGET_PER_SECOND = 2000
TARGET_P95_MS = 20.0


def baseline_app() -> FastAPI:
    """The baseline: one POST endpoint that reads the body and answers what the service does."""
    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/webhooks/whatsapp/{connection_id}")
    async def receive(connection_id: str, request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse({"ok": True})

    return app


# --- webhook bodies ------------------------------------------------------------------------


@dataclass(frozen=True)
class Webhook:
    """One signed request: the wamid it carries, the raw body and its headers."""

    wamid: str
    body: bytes
    headers: dict[str, str]


def _known_lead(n: int) -> str:
    return f"1555{n:07d}"


def _webhook(wamid: str, wa_id: str, n: int, now: int, text: str | None = None) -> Webhook:
    data = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "WABA",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550000000",
                                "phone_number_id": PHONE_ID,
                            },
                            "contacts": [{"profile": {"name": f"Lead {wa_id}"}, "wa_id": wa_id}],
                            "messages": [
                                {
                                    "from": wa_id,
                                    "id": wamid,
                                    "timestamp": str(now),
                                    "type": "text",
                                    "text": {"body": text or f"hello {n}, how much is the plan?"},
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }
    body = json.dumps(data, separators=(",", ":")).encode()
    signature = hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={signature}"}
    return Webhook(wamid, body, headers)


def make_webhooks(
    label: str, series: int, count: int, leads: int, rng: random.Random
) -> list[Webhook]:
    """``count`` webhooks with unique wamids; a few from new leads, the rest from known ones.

    ``series`` (0..99) keeps the new leads of one run apart from those of another.
    """
    now = int(time.time())
    out = []
    for i in range(count):
        if rng.random() < NEW_LEAD_SHARE:
            wa_id = f"1666{series:02d}{i:07d}"
        else:
            wa_id = _known_lead(rng.randrange(leads))
        out.append(_webhook(f"wamid.bench.{label}.{i:07d}", wa_id, i, now))
    return out


def warmup_webhooks(leads: int) -> list[Webhook]:
    """One webhook from each known lead: their contacts and conversations then exist."""
    now = int(time.time())
    return [_webhook(f"wamid.bench.warmup.{n:07d}", _known_lead(n), n, now) for n in range(leads)]


# --- load generator ------------------------------------------------------------------------


@dataclass
class Blast:
    """The outcome of sending a list of requests as fast as possible."""

    seconds: float
    statuses: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> int:
        return self.statuses["200"]

    @property
    def failed(self) -> int:
        return sum(v for k, v in self.statuses.items() if k != "200")


async def blast(
    session: aiohttp.ClientSession, url: str, requests: list[Webhook], concurrency: int
) -> Blast:
    """Send every request, at most ``concurrency`` in flight; seconds until the last answer."""
    pending = iter(requests)
    result = Blast(0.0)

    async def sender() -> None:
        for hook in pending:  # one shared iterator: each request is sent once
            try:
                async with session.post(url, data=hook.body, headers=hook.headers) as resp:
                    await resp.read()
                    result.statuses[str(resp.status)] += 1
            except (aiohttp.ClientError, OSError) as exc:
                result.statuses[type(exc).__name__] += 1

    start = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(concurrency)))
    result.seconds = time.perf_counter() - start
    return result


@dataclass
class Steady:
    """The outcome of sending at a fixed rate: per request send time and answer latency."""

    sent_at: dict[str, float] = field(default_factory=dict)
    answer_ms: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    late_ms: float = 0.0  # how far behind its due time the latest send started

    @property
    def failed(self) -> int:
        return sum(v for k, v in self.statuses.items() if k != "200")


async def steady(
    session: aiohttp.ClientSession, url: str, requests: list[Webhook], rate: float
) -> Steady:
    """Send request i at start + i / rate (open loop: a slow answer does not delay the next)."""
    result = Steady()

    async def send(hook: Webhook) -> None:
        result.sent_at[hook.wamid] = time.time()
        start = time.perf_counter()
        try:
            async with session.post(url, data=hook.body, headers=hook.headers) as resp:
                await resp.read()
                result.statuses[str(resp.status)] += 1
        except (aiohttp.ClientError, OSError) as exc:
            result.statuses[type(exc).__name__] += 1
            return
        result.answer_ms.append((time.perf_counter() - start) * 1000)

    loop = asyncio.get_running_loop()
    begin = loop.time() + 0.05
    tasks = []
    for i, hook in enumerate(requests):
        due = begin + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            result.late_ms = max(result.late_ms, -delay * 1000)
        tasks.append(asyncio.create_task(send(hook)))
    await asyncio.gather(*tasks)
    return result


def percentile(samples: list[float], share: float) -> float:
    """Nearest-rank percentile (the convention of bench.common.measure)."""
    ordered = sorted(samples)
    return ordered[max(int(len(ordered) * share) - 1, 0)]


# --- processes -----------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    """A subprocess started here, with its log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, lines: int = 20) -> str:
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def problems(self) -> list[str]:
        """Lines of the log that report an error or a warning."""
        text = self.log.read_text(errors="replace")
        words = ("Traceback", "ERROR", "WARNING", "warning")
        return [line for line in text.splitlines() if any(w in line for w in words)]


class Processes:
    """Every subprocess of the benchmark; stopped (SIGTERM, then SIGKILL) by pid."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: list[Proc] = []

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> Proc:
        log = self.logs / f"{name}.log"
        with log.open("ab") as out:
            popen = subprocess.Popen(
                argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=Path.cwd()
            )
        proc = Proc(name, popen, log)
        self.running.append(proc)
        return proc

    def stop(self, proc: Proc, grace: float = 15.0) -> None:
        if proc.popen.poll() is None:
            proc.popen.send_signal(signal.SIGTERM)
            try:
                proc.popen.wait(grace)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait()
        if proc in self.running:
            self.running.remove(proc)

    def stop_all(self) -> None:
        for proc in list(reversed(self.running)):
            self.stop(proc)


async def wait_http(session: aiohttp.ClientSession, base: str, proc: Proc, limit: float) -> None:
    """Until GET /healthz answers 200; fails if the process exits or ``limit`` passes."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited ({proc.popen.returncode}):\n{proc.tail()}")
        try:
            async with session.get(f"{base}/healthz") as resp:
                if resp.status == 200:
                    return
        except (aiohttp.ClientError, OSError):
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{proc.name} did not answer /healthz within {limit:.0f}s:\n{proc.tail()}")


async def wait_consumers(redis: Redis, count: int, procs: list[Proc], limit: float) -> None:
    """Until ``count`` workers wait on the task stream (clients blocked in XREADGROUP).

    Redis 7.0 lists a consumer of the group only once it was given a task, so the clients are
    counted instead (`crm up` runs no worker here: CRM_EMBEDDED_WORKER=false).
    """
    db = int(redis.connection_pool.connection_kwargs.get("db", 0))
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{proc.name} exited:\n{proc.tail()}")
        clients = await redis.client_list()
        reading = [c for c in clients if c.get("cmd") == "xreadgroup" and int(c["db"]) == db]
        if len(reading) >= count:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{count} workers did not read {STREAM} within {limit:.0f}s")


class CpuMeter:
    """CPU seconds spent by each component between start() and stop() (this machine only).

    A component is a list of pids, or an executable name looked up at start and at stop. By
    name, processes that ended in between are counted too, through their parent's reaped
    children times: asyncpg replaces a pool connection after 50,000 queries, so PostgreSQL
    backends come and go during a run. Reads /proc only.
    """

    def __init__(self, groups: dict[str, list[int] | str]) -> None:
        self.groups = groups
        self.before: dict[int, tuple[float, float]] = {}
        self.members: dict[str, list[int]] = {}
        self.used: dict[str, float] = {}
        # Every process and the kernel: loopback TCP is mostly softirq time, in no process.
        self.machine: tuple[float, ...] = (0.0, 0.0, 0.0)
        self.wall = 0.0

    @staticmethod
    def _pids(member: list[int] | str) -> list[int]:
        if isinstance(member, list):
            return member
        return [p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == member]

    @staticmethod
    def _cpu(pid: int) -> tuple[float, float] | None:
        """(own CPU seconds, CPU seconds of its children that ended and were reaped)."""
        try:
            t = psutil.Process(pid).cpu_times()
        except psutil.Error:
            return None
        return float(t.user + t.system), float(t.children_user + t.children_system)

    def start(self) -> None:
        self.before = {}
        self.members = {}
        for name, member in self.groups.items():
            self.members[name] = []
            for pid in self._pids(member):
                cpu = self._cpu(pid)
                if cpu is not None:
                    self.before[pid] = cpu
                    self.members[name].append(pid)
        self.machine = self._busy()
        self.wall = time.perf_counter()

    @staticmethod
    def _busy() -> tuple[float, float, float]:
        """Machine-wide (busy, softirq, steal) CPU seconds."""
        t = psutil.cpu_times()
        busy = sum(t) - t.idle - getattr(t, "iowait", 0.0)
        return float(busy), float(getattr(t, "softirq", 0.0)), float(getattr(t, "steal", 0.0))

    def stop(self) -> None:
        self.wall = time.perf_counter() - self.wall
        self.machine = tuple(b - a for a, b in zip(self.machine, self._busy(), strict=True))
        self.used = {}
        for name, member in self.groups.items():
            total = 0.0
            alive = set()
            for pid in self._pids(member):
                cpu = self._cpu(pid)
                if cpu is None:
                    continue
                alive.add(pid)
                own, children = self.before.get(pid, (0.0, 0.0))
                total += cpu[0] - own
                if isinstance(member, str):
                    total += cpu[1] - children
            if isinstance(member, str):
                # An ended process is in its parent's children times with its whole life.
                gone = set(self.members[name]) - alive
                total -= sum(self.before[pid][0] for pid in gone)
            self.used[name] = total

    def summary(self) -> str:
        """Cores used by each component: 1.00 is one core busy the whole time."""
        parts = [f"{k} {v / self.wall:.2f}" for k, v in self.used.items()]
        busy, softirq, steal = (v / self.wall for v in self.machine)
        machine = f"whole machine {busy:.2f} (softirq {softirq:.2f}, steal {steal:.2f})"
        return ", ".join([*parts, machine])


# --- database side -------------------------------------------------------------------------


async def setup_database(url: str) -> int:
    """Migrate, then a tenant and a real (non-sandbox) WhatsApp connection; its id."""
    from crm.db import close_db, init_db, migrate_db
    from crm.infrastructure.cipher import CredentialCipher
    from crm.messaging import ChannelKind
    from crm.services.access import Actor
    from crm.services.accounts.workspaces import do_create_tenant
    from crm.services.inbox.connections import NewConnection, do_add_connection

    await migrate_db(url)
    await init_db(url)
    try:
        created = await do_create_tenant("Bench", owner_telegram_id=1)
        connection = await do_add_connection(
            Actor.system(created.tenant.id),
            CredentialCipher(SECRET_KEY),
            NewConnection(
                kind=ChannelKind.WHATSAPP,
                credentials={"token": "t", "app_secret": APP_SECRET, "verify_token": "v"},
                settings={"phone_id": PHONE_ID},
            ),
        )
        return int(connection.id)
    finally:
        await close_db()


async def message_count(pg: asyncpg.Connection) -> int:
    return int(await pg.fetchval("SELECT count(*) FROM message"))


async def wait_rows(
    pg: asyncpg.Connection,
    target: int,
    start: float,
    limit: float,
    sending: asyncio.Task[Blast] | None = None,
) -> tuple[int, float | None]:
    """Poll every 50 ms until ``target`` message rows exist; (rows, seconds since ``start``).

    When ``sending`` ends with requests that were not accepted, those are not waited for.
    """
    deadline = time.perf_counter() + limit
    rows = 0
    while time.perf_counter() < deadline:
        if sending is not None and sending.done():
            target -= sending.result().failed
            sending = None
        rows = await message_count(pg)
        if rows >= target:
            return rows, time.perf_counter() - start
        await asyncio.sleep(0.05)
    return rows, None


async def wait_drained(
    pg: asyncpg.Connection, redis: Redis, start: float, limit: float
) -> float | None:
    """Until the outbox and the task stream are empty (events dispatched too); seconds."""
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        outbox = await pg.fetchval("SELECT count(*) FROM outbox")
        queued = await redis.xlen(STREAM)
        if outbox == 0 and queued == 0:
            return time.perf_counter() - start
        await asyncio.sleep(0.1)
    return None


# --- the runs ------------------------------------------------------------------------------


@dataclass
class Result:
    """Figures of one setup: the baseline, or the service with some workers."""

    label: str
    accepted: float = 0.0
    persisted: float | None = None
    drained: float | None = None
    failed: int = 0
    rows: int = 0
    distinct: int = 0
    cpu: str = ""
    stored_ms: list[float] = field(default_factory=list)
    answer_ms: list[float] = field(default_factory=list)
    steady_failed: int = 0
    steady_missing: int = 0
    late_ms: float = 0.0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def client_session(concurrency: int) -> aiohttp.ClientSession:
    """Keep-alive connections that the client closes after 3 s idle, before uvicorn does (5 s).

    A request sent just as the server closes an idle connection fails: seen once between the
    warm-up and the throughput run (23 ServerDisconnectedError/ClientOSError, no row stored).
    """
    connector = aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=3.0)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60))


async def run_baseline(args: argparse.Namespace, procs: Processes) -> Result:
    """The bare endpoint under uvicorn, same generator, same requests."""
    port = free_port()
    base = f"http://{HOST}:{port}"
    argv = [sys.executable, "-m", "uvicorn", "--factory", "bench.bench_webhooks:baseline_app"]
    argv += ["--host", HOST, "--port", str(port), "--log-level", "warning"]
    proc = procs.start("baseline", argv, dict(os.environ))
    result = Result("bare FastAPI")
    try:
        async with client_session(args.concurrency) as session:
            await wait_http(session, base, proc, 30)
            url = f"{base}/webhooks/whatsapp/1"
            rng = random.Random(3)
            await blast(session, url, warmup_webhooks(args.leads), args.concurrency)
            hooks = make_webhooks("base", 1, args.messages, args.leads, rng)
            cpu = CpuMeter({"server": [proc.popen.pid], "generator": [os.getpid()]})
            cpu.start()
            done = await blast(session, url, hooks, args.concurrency)
            cpu.stop()
            result.accepted = args.messages / done.seconds
            result.failed = done.failed
            result.cpu = cpu.summary()
            if done.failed:
                print(f"  baseline rejected/errored: {dict(done.statuses)}", flush=True)
            count = int(args.rate * args.duration)
            ran = await steady(
                session, url, make_webhooks("base-s", 2, count, args.leads, rng), args.rate
            )
            result.answer_ms = ran.answer_ms
            result.steady_failed = ran.failed
            result.late_ms = ran.late_ms
    finally:
        procs.stop(proc)
    return result


async def run_service(
    args: argparse.Namespace, procs: Processes, workers: int, tmp: Path, redis_url: str
) -> Result:
    """A fresh database, `crm up` and ``workers`` x `crm worker`; throughput, then latency."""
    url = await create_database("crm_bench_webhooks")
    redis = Redis.from_url(redis_url)
    started: list[Proc] = []
    result = Result(f"{workers} worker{'s' if workers > 1 else ''} x {args.worker_concurrency}")
    try:
        await redis.flushdb()
        connection_id = await setup_database(url)
        port = free_port()
        base = f"http://{HOST}:{port}"
        env = {
            **os.environ,
            "CRM_DATABASE_URL": url,
            "CRM_REDIS_URL": redis_url,
            "CRM_EMBEDDED_WORKER": "false",
            "CRM_SANDBOX": "off",
            "CRM_MEDIA_DIR": str(tmp / "media"),
            # A fresh run: no emulator state or index left by an earlier one in ./data.
            "CRM_SANDBOX_STATE_DIR": str(tmp / "sandbox"),
            "CRM_AI_INDEX_DIR": str(tmp / "ai-index"),
            "CRM_SECRET_KEY": SECRET_KEY,
            "CRM_HOST": HOST,
            "CRM_PORT": str(port),
        }
        crm = str(Path(sys.executable).parent / "crm")
        up = procs.start(
            f"crm-up-{workers}w",
            [crm, "up", "--host", HOST, "--port", str(port), "--log-level", "warning"],
            env,
        )
        started.append(up)
        for n in range(workers):
            argv = [crm, "worker", "--concurrency", str(args.worker_concurrency)]
            started.append(procs.start(f"crm-worker-{workers}w-{n}", argv, env))
        pg = await asyncpg.connect(asyncpg_url(url))
        try:
            async with client_session(args.concurrency) as session:
                await wait_http(session, base, up, 60)
                await wait_consumers(redis, workers, started, 60)
                hook_url = f"{base}/webhooks/whatsapp/{connection_id}"
                rng = random.Random(5)

                # Warm-up: every known lead writes once; wait until stored and dispatched.
                start = time.perf_counter()
                warm = await blast(session, hook_url, warmup_webhooks(args.leads), args.concurrency)
                if warm.failed:
                    raise RuntimeError(f"warm-up rejected: {dict(warm.statuses)}\n{up.tail()}")
                await wait_rows(pg, args.leads, start, 120)
                await wait_drained(pg, redis, start, 120)

                # Throughput.
                before = await message_count(pg)
                hooks = make_webhooks(f"t{workers}", 3, args.messages, args.leads, rng)
                cpu = CpuMeter(
                    {
                        "crm up": [up.popen.pid],
                        "workers": [p.popen.pid for p in started[1:]],
                        "postgres": "postgres",
                        "redis": "redis-server",
                        "generator": [os.getpid()],
                    }
                )
                cpu.start()
                start = time.perf_counter()
                limit = max(120.0, args.messages / 50)
                sending = asyncio.create_task(blast(session, hook_url, hooks, args.concurrency))
                _, seconds = await wait_rows(pg, before + args.messages, start, limit, sending)
                done = await sending
                drained = await wait_drained(pg, redis, start, limit)
                cpu.stop()
                result.accepted = done.ok / done.seconds
                result.failed = done.failed
                result.persisted = done.ok / seconds if seconds else None
                result.drained = done.ok / drained if drained else None
                result.cpu = cpu.summary()
                await asyncio.sleep(0.5)  # any duplicate would have landed by now
                result.rows, result.distinct = await pg.fetchrow(
                    "SELECT count(*), count(DISTINCT external_id) FROM message "
                    "WHERE external_id LIKE $1",
                    f"wamid.bench.t{workers}.%",
                )
                if done.failed:
                    print(f"  rejected/errored: {dict(done.statuses)}", flush=True)
                    result.notes.append(f"throughput: {dict(done.statuses)}")

                # Latency at a steady rate.
                count = int(args.rate * args.duration)
                hooks = make_webhooks(f"s{workers}", 4, count, args.leads, rng)
                before = await message_count(pg)
                ran = await steady(session, hook_url, hooks, args.rate)
                await wait_rows(pg, before + count - ran.failed, time.perf_counter(), 120)
                rows_at = await pg.fetch(
                    "SELECT external_id, created_at FROM message WHERE external_id = ANY($1)",
                    [h.wamid for h in hooks],
                )
                result.stored_ms = [
                    (r["created_at"].timestamp() - ran.sent_at[r["external_id"]]) * 1000
                    for r in rows_at
                ]
                result.steady_missing = count - len(rows_at)
                result.answer_ms = ran.answer_ms
                result.steady_failed = ran.failed
                if ran.failed:
                    result.notes.append(f"steady: {dict(ran.statuses)}")
                result.late_ms = ran.late_ms
                await wait_drained(pg, redis, time.perf_counter(), 120)
        finally:
            await pg.close()
        result.problems = [line for p in started for line in p.problems()]
    finally:
        for proc in reversed(started):
            procs.stop(proc)
        await redis.flushdb()
        await redis.aclose()
        await drop_database(url)
    return result


def _ms(samples: list[float], share: float) -> str:
    return f"{percentile(samples, share):.1f}" if samples else "-"


def report(args: argparse.Namespace, baseline: Result, results: list[Result]) -> None:
    """The table, the baseline from the same run first."""
    print(
        f"\nWhatsApp webhooks: {args.messages} signed webhooks per throughput run, "
        f"{args.concurrency} in flight (aiohttp, keep-alive); then {args.rate:.0f} msg/s for "
        f"{args.duration:.0f} s. Leads: {args.leads} known, {NEW_LEAD_SHARE:.0%} of messages "
        "from new ones."
    )
    print(
        f"Machine: {os.cpu_count()} CPUs shared by generator, uvicorn, workers, PostgreSQL, "
        "Redis. `crm up --log-level warning` (1 uvicorn process, CRM_EMBEDDED_WORKER=false), "
        f"`crm worker --concurrency {args.worker_concurrency}`, Redis stream broker."
    )
    header = (
        f"{'setup':<18}{'accepted/s':>11}{'persisted/s':>12}{'drained/s':>10}{'vs base':>8}"
        f"{'failed':>7}{'rows':>14}  {'stored p50/p95/p99/max ms':>27}  {'HTTP p50/p95 ms':>16}"
    )
    print(header)
    print("-" * len(header))
    base = baseline.accepted
    print(
        f"{baseline.label:<18}{baseline.accepted:>11.0f}{'-':>12}{'-':>10}{'1.00':>8}"
        f"{baseline.failed:>7}{'-':>14}  {'-':>27}  "
        f"{_ms(baseline.answer_ms, 0.5):>7} /{_ms(baseline.answer_ms, 0.95):>7}"
    )
    for r in results:
        persisted = f"{r.persisted:.0f}" if r.persisted else "timeout"
        drained = f"{r.drained:.0f}" if r.drained else "timeout"
        ratio = f"{r.persisted / base:.2f}" if r.persisted else "-"
        stored = (
            f"{_ms(r.stored_ms, 0.5)} /{_ms(r.stored_ms, 0.95)} /{_ms(r.stored_ms, 0.99)} /"
            f"{max(r.stored_ms):.0f}"
            if r.stored_ms
            else "-"
        )
        print(
            f"{r.label:<18}{r.accepted:>11.0f}{persisted:>12}{drained:>10}{ratio:>8}"
            f"{r.failed:>7}{f'{r.rows}/{args.messages}':>14}  {stored:>27}  "
            f"{_ms(r.answer_ms, 0.5):>7} /{_ms(r.answer_ms, 0.95):>7}"
        )
    print(
        "persisted/s: M / (first send -> M-th message row); drained/s: until the outbox and the "
        "task stream are empty too (message.received events dispatched); vs base: persisted/s "
        "over the bare endpoint's req/s; rows: stored distinct wamids of the run / sent."
    )
    print(
        "stored: message.created_at (worker clock at insert, before commit) - send start "
        "(generator clock; one machine) at the steady rate; HTTP: answer latency at that rate."
    )
    print(
        f"Targets: >= {TARGET_PER_SECOND} webhooks/s persisted; stored p95 <= {TARGET_P95_MS:g} ms."
    )
    print("CPU cores used from the first send until drained (1.00 = one core busy all along):")
    print(f"  {baseline.label} (until the last answer): {baseline.cpu}")
    for r in results:
        notes = list(r.notes)
        if r.distinct != r.rows:
            notes.append(f"{r.rows - r.distinct} duplicate rows")
        if r.steady_failed or r.steady_missing:
            notes.append(f"steady: {r.steady_failed} failed, {r.steady_missing} not stored")
        if r.drained and args.rate >= r.drained:
            notes.append(
                f"the steady {args.rate:.0f} msg/s is above the {r.drained:.0f}/s drained: the "
                "queue grows during the steady run, so its latency grows with --duration"
            )
        if r.late_ms > 5:
            notes.append(f"generator fell {r.late_ms:.0f} ms behind schedule")
        if r.problems:
            notes.append(
                f"{len(r.problems)} warning/error lines in the service logs, first: "
                f"{r.problems[0][:200]}"
            )
        extra = f" [{'; '.join(notes)}]" if notes else ""
        print(f"  {r.label}: {r.cpu}{extra}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_webhooks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run (3k messages, 5 s)")
    parser.add_argument("--messages", type=int, default=None, help="webhooks per throughput run")
    parser.add_argument("--rate", type=float, default=200.0, help="steady rate, msg/s")
    parser.add_argument("--duration", type=float, default=None, help="steady run seconds")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    parser.add_argument("--leads", type=int, default=1000, help="distinct known leads")
    parser.add_argument(
        "--workers", default=None, help="comma-separated `crm worker` process counts (1,2)"
    )
    parser.add_argument("--worker-concurrency", type=int, default=10)
    parser.add_argument("--logs", default=None, help="keep the subprocesses' logs in this dir")
    args = parser.parse_args(argv)
    args.messages = args.messages or (3_000 if args.quick else 20_000)
    args.duration = args.duration or (5.0 if args.quick else 20.0)
    args.workers = [int(w) for w in (args.workers or ("1" if args.quick else "1,2")).split(",")]
    return args


async def main(argv: list[str] | None = None) -> None:
    """Baseline, then each worker setup; print one table."""
    args = parse_args(argv)
    redis_url = os.environ.get("CRM_BENCH_REDIS_URL", DEFAULT_REDIS_URL)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="crm-bench-webhooks-") as tmp_dir:
        tmp = Path(tmp_dir)
        logs = Path(args.logs) if args.logs else tmp
        logs.mkdir(parents=True, exist_ok=True)
        procs = Processes(logs)
        try:
            print("baseline: bare FastAPI endpoint ...", flush=True)
            baseline = await run_baseline(args, procs)
            results = []
            for workers in args.workers:
                print(f"service: `crm up` + {workers} x `crm worker` ...", flush=True)
                results.append(await run_service(args, procs, workers, tmp, redis_url))
            report(args, baseline, results)
            print(f"total {time.perf_counter() - started:.0f} s")
        finally:
            procs.stop_all()


if __name__ == "__main__":
    asyncio.run(main())
