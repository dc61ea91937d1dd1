"""Lead webhook to operator notification, on PostgreSQL + Redis + `crm worker` processes.

The service runs as in production, in sandbox mode: `crm up` serves the webhooks and the
Telegram emulator (the operator bot's Bot API), `crm worker` processes store the lead messages,
run the ``message.received`` handlers and send the notifications through aiogram over HTTP.

Set-up, in a fresh database: a workspace whose owner has no Telegram id, a WhatsApp connection
with a known app secret, ``--leads`` leads who wrote once (their contacts and conversations
exist), then ``--operators`` members with Telegram ids, each lead's conversation assigned to one
of them round robin, and each operator's private chat with the bot opened (``/help``).

Measured at a steady ``--rate`` of signed lead webhooks for ``--duration`` seconds: for each
lead message, the moment the emulator took the operator's ``sendMessage`` minus the moment the
webhook was sent (one machine, one clock). Message k comes from lead k mod leads, assigned to
operator k mod operators, so every operator gets rate/operators notifications a second: with
the defaults one a second, Telegram's pace for one private chat.

Baselines from the same run:
- stored: the same messages' webhook-to-stored latency (message.created_at), the part of the
  path before the notification;
- Bot API round trip: aiogram's sendMessage from this process to the same emulator at the same
  rate, the floor cost of one notification's HTTP call.

200 notifications a second exceed a bot's free budget (about 30 messages/s): the service runs
with CRM_OPERATOR_BOT_PAID_BROADCAST=true (allow_paid_broadcast, up to 1000/s).
Run: ``python -m bench.bench_notify [--quick]`` (env CRM_BENCH_ADMIN_URL, CRM_BENCH_REDIS_URL).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from redis.asyncio import Redis

from bench.bench_webhooks import (
    APP_SECRET,
    HOST,
    PHONE_ID,
    SECRET_KEY,
    CpuMeter,
    Proc,
    Processes,
    Webhook,
    _webhook,
    blast,
    client_session,
    free_port,
    percentile,
    steady,
    wait_consumers,
    wait_drained,
    wait_http,
    wait_rows,
    warmup_webhooks,
)
from bench.common import asyncpg_url, create_database, drop_database

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/13"
OPERATOR_BASE_ID = 7_100_000  # Telegram ids of the benchmark's operators
TOKEN_RE = re.compile(r"bench-(\d{7})")
TARGET_P95_MS = 50.0


async def setup_database(url: str, operators: int) -> tuple[int, int, list[int]]:
    """Migrate; a workspace, its WhatsApp connection and operators: (tenant, connection, users)."""
    from crm.db import close_db, init_db, migrate_db
    from crm.infrastructure.cipher import CredentialCipher
    from crm.messaging import ChannelKind
    from crm.models import Role
    from crm.services.access import Actor
    from crm.services.accounts.workspaces import do_add_member, do_create_tenant
    from crm.services.inbox.connections import NewConnection, do_add_connection

    await migrate_db(url)
    await init_db(url)
    try:
        # The owner has no Telegram id: the warm-up's unassigned lead messages notify nobody.
        created = await do_create_tenant("Bench", owner_email="owner@bench.example")
        tenant_id = created.tenant.id
        owner = Actor(tenant_id=tenant_id, user_id=created.owner.id, role=Role.OWNER)
        connection = await do_add_connection(
            Actor.system(tenant_id),
            CredentialCipher(SECRET_KEY),
            NewConnection(
                kind=ChannelKind.WHATSAPP,
                credentials={"token": "t", "app_secret": APP_SECRET, "verify_token": "v"},
                settings={"phone_id": PHONE_ID},
            ),
        )
        users = []
        for n in range(operators):
            membership = await do_add_member(
                owner, Role.BIDI, telegram_id=OPERATOR_BASE_ID + n, name=f"Operator {n}"
            )
            users.append(int(membership.user_id))
        return tenant_id, int(connection.id), users
    finally:
        await close_db()


async def assign_round_robin(pg: asyncpg.Connection, users: list[int], leads: int) -> None:
    """Lead n's conversation goes to operator n mod len(users)."""
    from bench.bench_webhooks import _known_lead

    rows = [(users[n % len(users)], _known_lead(n)) for n in range(leads)]
    await pg.executemany(
        "UPDATE conversation SET assignee_id = $1 WHERE peer_id = $2",
        rows,
    )


def lead_webhooks(count: int, leads: int) -> list[Webhook]:
    """Message k from lead k mod ``leads``; its text carries a token the notification shows."""
    from bench.bench_webhooks import _known_lead

    now = int(time.time())
    return [
        _webhook(
            f"wamid.bench.notify.{k:07d}",
            _known_lead(k % leads),
            k,
            now,
            text=f"bench-{k:07d} how much is the plan?",
        )
        for k in range(count)
    ]


async def sent_to_operators(session: aiohttp.ClientSession, base: str) -> list[dict[str, Any]]:
    """Every message the operator bot sent (the emulator's record)."""
    async with session.get(
        f"{base}/sandbox/telegram/sent", params={"connection_id": "operator"}
    ) as resp:
        resp.raise_for_status()
        return list(await resp.json())


async def open_chats(session: aiohttp.ClientSession, base: str, operators: int) -> None:
    """Each operator writes /help, so their private chat with the bot exists."""
    for n in range(operators):
        payload = {
            "connection_id": "operator",
            "from_user_id": OPERATOR_BASE_ID + n,
            "first_name": f"Op{n}",
            "text": "/help",
        }
        async with session.post(f"{base}/sandbox/telegram/updates", json=payload) as resp:
            resp.raise_for_status()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        chats = {m["chat_id"] for m in await sent_to_operators(session, base)}
        if len(chats) >= operators:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError("the operators' /help answers did not all arrive")


async def wait_notifications(
    session: aiohttp.ClientSession, base: str, expected: int, limit: float
) -> dict[int, float]:
    """Poll until ``expected`` notifications arrived; token k -> when the emulator took it."""
    deadline = time.monotonic() + limit
    found: dict[int, float] = {}
    while time.monotonic() < deadline:
        found = {}
        for message in await sent_to_operators(session, base):
            match = TOKEN_RE.search(message.get("text") or message.get("caption") or "")
            if match:
                found.setdefault(int(match.group(1)), float(message["received_at"]))
        if len(found) >= expected:
            break
        await asyncio.sleep(0.5)
    return found


async def bot_api_round_trips(
    base: str, token: str, chats: list[int], rate: float, count: int
) -> list[float]:
    """aiogram sendMessage from here to the emulator at ``rate``: ms per call."""
    from aiogram import Bot
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer

    session = AiohttpSession(api=TelegramAPIServer.from_base(f"{base}/sandbox/telegram"))
    bot = Bot(token=token, session=session)
    samples: list[float] = []

    async def send(k: int) -> None:
        start = time.perf_counter()
        await bot.send_message(chat_id=chats[k % len(chats)], text=f"baseline {k}")
        samples.append((time.perf_counter() - start) * 1000)

    try:
        loop = asyncio.get_running_loop()
        begin = loop.time() + 0.05
        tasks = []
        for k in range(count):
            delay = begin + k / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(k)))
        await asyncio.gather(*tasks)
    finally:
        await bot.session.close()
    return samples


@dataclass
class Result:
    """Figures of one worker setup."""

    label: str
    notified_ms: list[float] = field(default_factory=list)
    stored_ms: list[float] = field(default_factory=list)
    round_trip_ms: list[float] = field(default_factory=list)
    sent: int = 0
    failed: int = 0
    missing: int = 0
    late_ms: float = 0.0
    cpu: str = ""
    problems: list[str] = field(default_factory=list)


async def run(args: argparse.Namespace, procs: Processes, workers: int, tmp: Path) -> Result:
    """A fresh database, `crm up` and ``workers`` x `crm worker`; the steady run."""
    from crm.settings import Settings
    from crm.wiring import sandbox_operator_token

    redis_url = os.environ.get("CRM_BENCH_REDIS_URL", DEFAULT_REDIS_URL)
    url = await create_database("crm_bench_notify")
    redis = Redis.from_url(redis_url)
    started: list[Proc] = []
    result = Result(f"{workers} worker{'s' if workers > 1 else ''} x {args.worker_concurrency}")
    try:
        await redis.flushdb()
        _tenant_id, connection_id, users = await setup_database(url, args.operators)
        port = free_port()
        base = f"http://{HOST}:{port}"
        env = {
            **os.environ,
            "CRM_DATABASE_URL": url,
            "CRM_REDIS_URL": redis_url,
            "CRM_EMBEDDED_WORKER": "false",
            "CRM_SANDBOX": "on",
            "CRM_PUBLIC_BASE_URL": base,
            "CRM_OPERATOR_BOT_PAID_BROADCAST": "true",
            "CRM_MEDIA_DIR": str(tmp / "media"),
            # A fresh run: no emulator state or index left by an earlier one in ./data.
            "CRM_SANDBOX_STATE_DIR": str(tmp / "sandbox"),
            "CRM_AI_INDEX_DIR": str(tmp / "ai-index"),
            "CRM_SECRET_KEY": SECRET_KEY,
        }
        crm = str(Path(sys.executable).parent / "crm")
        up = procs.start(
            f"notify-up-{workers}w",
            [crm, "up", "--host", HOST, "--port", str(port), "--log-level", "warning"],
            env,
        )
        started.append(up)
        for n in range(workers):
            argv = [crm, "worker", "--concurrency", str(args.worker_concurrency)]
            started.append(procs.start(f"notify-worker-{workers}w-{n}", argv, env))
        pg = await asyncpg.connect(asyncpg_url(url))
        try:
            async with client_session(64) as session:
                await wait_http(session, base, up, 60)
                await wait_consumers(redis, workers, started, 60)
                hook_url = f"{base}/webhooks/whatsapp/{connection_id}"

                # Warm-up: every lead writes once (nobody is notified: nothing is assigned
                # and the owner has no Telegram id), then the conversations are assigned.
                start = time.perf_counter()
                warm = await blast(session, hook_url, warmup_webhooks(args.leads), 64)
                if warm.failed:
                    raise RuntimeError(f"warm-up rejected: {dict(warm.statuses)}\n{up.tail()}")
                await wait_rows(pg, args.leads, start, 120)
                await wait_drained(pg, redis, start, 120)
                await assign_round_robin(pg, users, args.leads)
                await open_chats(session, base, args.operators)
                await asyncio.sleep(1.2)  # the /help answers' per-chat pacing has passed

                token = sandbox_operator_token(
                    Settings(secret_key=SECRET_KEY, _env_file=None)  # type: ignore[call-arg]
                )
                chats = [OPERATOR_BASE_ID + n for n in range(args.operators)]
                count = int(args.rate * args.duration)
                hooks = lead_webhooks(count, args.leads)
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
                ran = await steady(session, hook_url, hooks, args.rate)
                arrived = await wait_notifications(session, base, count - ran.failed, 120)
                cpu.stop()
                result.cpu = cpu.summary()
                by_wamid = {h.wamid: k for k, h in enumerate(hooks)}
                result.notified_ms = [
                    (arrived[k] - ran.sent_at[wamid]) * 1000
                    for wamid, k in by_wamid.items()
                    if k in arrived and wamid in ran.sent_at
                ]
                rows = await pg.fetch(
                    "SELECT external_id, created_at FROM message WHERE external_id = ANY($1)",
                    list(by_wamid),
                )
                result.stored_ms = [
                    (r["created_at"].timestamp() - ran.sent_at[r["external_id"]]) * 1000
                    for r in rows
                ]
                result.sent = count
                result.failed = ran.failed
                result.missing = count - ran.failed - len(result.notified_ms)
                result.late_ms = ran.late_ms
                await wait_drained(pg, redis, time.perf_counter(), 120)

                # Baseline: the bare Bot API call, same emulator, same rate, same chats.
                await asyncio.sleep(1.2)
                result.round_trip_ms = await bot_api_round_trips(
                    base, token, chats, args.rate, int(args.rate * min(args.duration, 5.0))
                )
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


def _row(name: str, samples: list[float]) -> str:
    if not samples:
        return f"  {name:<34}{'-':>8}"
    figures = [percentile(samples, s) for s in (0.5, 0.95, 0.99)]
    cells = "".join(f"{v:>8.1f}" for v in figures)
    return f"  {name:<34}{cells}{max(samples):>8.1f}{len(samples):>8}"


def report(args: argparse.Namespace, results: list[Result]) -> None:
    """One table per worker setup; the baselines from the same run beside the figure."""
    print(
        f"\nLead webhook -> operator notification: {args.rate:.0f} signed WhatsApp webhooks/s "
        f"for {args.duration:.0f} s; {args.leads} leads assigned round robin to "
        f"{args.operators} operators ({args.rate / args.operators:g} notifications/s each)."
    )
    print(
        f"Machine: {os.cpu_count()} CPUs shared by generator, `crm up` (API + Telegram emulator), "
        "workers, PostgreSQL, Redis. Paid broadcast on (1000 msg/s bot budget)."
    )
    for r in results:
        print(f"\n{r.label}:")
        print(f"  {'ms':<34}{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}{'n':>8}")
        print(_row("notified (webhook -> sendMessage)", r.notified_ms))
        print(_row("baseline: stored (webhook -> row)", r.stored_ms))
        print(_row("baseline: Bot API round trip", r.round_trip_ms))
        notes = []
        if r.failed or r.missing:
            notes.append(f"{r.failed} webhooks failed, {r.missing} notifications missing")
        if r.late_ms > 5:
            notes.append(f"generator fell {r.late_ms:.0f} ms behind schedule")
        if r.problems:
            notes.append(f"{len(r.problems)} warning/error log lines, first: {r.problems[0][:200]}")
        print(f"  CPU cores: {r.cpu}")
        for note in notes:
            print(f"  note: {note}")
    print(f"\nTarget: notified p95 <= {TARGET_P95_MS:g} ms (the seed documents ask for < 100 ms).")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_notify", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run (5 s)")
    parser.add_argument("--rate", type=float, default=200.0, help="lead messages per second")
    parser.add_argument("--duration", type=float, default=None, help="steady run seconds")
    parser.add_argument("--leads", type=int, default=1000)
    parser.add_argument("--operators", type=int, default=200)
    parser.add_argument("--workers", default="1", help="comma-separated worker process counts")
    parser.add_argument("--worker-concurrency", type=int, default=10)
    parser.add_argument("--logs", default=None, help="keep the subprocesses' logs in this dir")
    args = parser.parse_args(argv)
    args.duration = args.duration or (5.0 if args.quick else 20.0)
    args.workers = [int(w) for w in str(args.workers).split(",")]
    return args


async def main(argv: list[str] | None = None) -> None:
    """Each worker setup in turn; one report."""
    args = parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="crm-bench-notify-") as tmp_dir:
        tmp = Path(tmp_dir)
        logs = Path(args.logs) if args.logs else tmp
        logs.mkdir(parents=True, exist_ok=True)
        procs = Processes(logs)
        try:
            results = []
            for workers in args.workers:
                print(f"service: `crm up` + {workers} x `crm worker` ...", flush=True)
                results.append(await run(args, procs, workers, tmp))
            report(args, results)
            print(f"total {time.perf_counter() - started:.0f} s")
        finally:
            procs.stop_all()


if __name__ == "__main__":
    asyncio.run(main())
