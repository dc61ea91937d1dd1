"""The ``crm`` command: run the service, migrate, manage tenants and keys, import and export."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from crm.db import close_db, init_db, migrate_db
from crm.errors import ServiceError
from crm.infrastructure.redaction import install_log_redaction, register_secret
from crm.models import Membership, Role, Tenant
from crm.services.access import Actor, ActorType, Scope
from crm.services.accounts.api_keys import do_create_api_key, do_revoke_api_key
from crm.services.accounts.workspaces import do_create_tenant
from crm.settings import Settings

AsyncCommand = Callable[[Settings, argparse.Namespace], Coroutine[Any, Any, int]]


def _print_json(data: dict[str, Any]) -> None:
    print(json.dumps(data, ensure_ascii=False))


async def _with_db(settings: Settings, work: Callable[[], Awaitable[int]]) -> int:
    await init_db(settings.database_url)
    try:
        return await work()
    finally:
        await close_db()


def settings_for_up(settings: Settings, args: argparse.Namespace) -> Settings:
    """``--host``/``--port`` set what CRM_HOST/CRM_PORT set, the public base URL included."""
    changes: dict[str, Any] = {}
    if args.host:
        changes["host"] = args.host
    if args.port:
        changes["port"] = args.port
    # base_url follows host and port unless CRM_PUBLIC_BASE_URL names it explicitly.
    return settings.model_copy(update=changes) if changes else settings


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    """API, workers and scheduler in one process, after applying migrations."""
    import uvicorn

    from crm.app import create_app

    settings = settings_for_up(settings, args)
    asyncio.run(migrate_db(settings.database_url))
    host, port = settings.host, settings.port
    print(f"crm: serving on http://{host}:{port} (docs at /docs)", file=sys.stderr)
    uvicorn.run(create_app(settings), host=host, port=port, log_level=args.log_level)
    return 0


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    """Apply pending migrations."""
    asyncio.run(migrate_db(settings.database_url))
    print("crm: database is up to date", file=sys.stderr)
    return 0


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    """A task worker on the Redis broker."""
    from crm.tasks.backbone import NO_REDIS_MESSAGE, run_worker
    from crm.tasks.handlers import registry
    from crm.wiring import build_assistant, build_channels, build_operator_bot

    if not settings.redis_url:  # refused at once, not after loading the model and the bot
        print(NO_REDIS_MESSAGE.format(command="worker"), file=sys.stderr)
        return 2
    wiring = build_channels(settings)  # the ingest task and the delivery handler find it
    assistant = build_assistant(settings, wiring.cipher)
    assistant.install(registry)  # before the bot's: notifications show the intent
    asyncio.run(assistant.warm_up())  # the model loads before the first task, not during it
    operator = build_operator_bot(wiring, assistant)
    if operator is not None:
        # Any worker may take any event's dispatch or periodic round: each must run the bot's
        # handlers (lead notifications, alerts, team inbox posts) and jobs (digest, team inbox).
        operator.install_handlers(registry)
    on_stop = operator.stop if operator is not None else None
    return (
        asyncio.run(
            run_worker(settings.database_url, settings.redis_url, args.concurrency, on_stop=on_stop)
        )
        or 0
    )


def cmd_scheduler(settings: Settings, args: argparse.Namespace) -> int:
    """The scheduler that sends due tasks to the Redis broker."""
    from crm.tasks.backbone import run_scheduler

    return (
        asyncio.run(
            run_scheduler(
                settings.database_url, settings.redis_url, settings.scheduler_interval_seconds
            )
        )
        or 0
    )


async def _tenants_create(settings: Settings, args: argparse.Namespace) -> int:
    async def work() -> int:
        created = await do_create_tenant(
            args.name,
            owner_telegram_id=args.owner_telegram_id,
            owner_email=args.owner_email,
            default_region=args.region,
        )
        actor = Actor(
            tenant_id=created.tenant.id,
            user_id=created.owner.id,
            role=Role.OWNER,
            actor_type=ActorType.SYSTEM,
        )
        issued = await do_create_api_key(
            actor, "owner (cli)", [s.value for s in Scope], for_user_id=created.owner.id
        )
        sandbox = await _sandbox_connections_for(settings, created.tenant.id)
        try_it = await _sandbox_sign_in(settings, actor) if sandbox else ""
        if args.json:
            _print_json({"tenant_id": created.tenant.id, "api_key": issued.token})
            for item in sandbox:  # stdout stays the documented JSON; the rest is a note
                print(f"sandbox {item['kind']} connection {item['connection_id']}", file=sys.stderr)
            if sandbox:
                print(f"try it: {try_it}", file=sys.stderr)
        else:
            print(f"tenant {created.tenant.id} '{created.tenant.name}' created")
            print(f"owner user id: {created.owner.id}")
            print(f"API key (shown once, store it now): {issued.token}")
            for item in sandbox:
                print(f"sandbox {item['kind']} connection {item['connection_id']}")
            if sandbox:
                print(f"try it: {try_it}")
        return 0

    return await _with_db(settings, work)


async def _sandbox_sign_in(settings: Settings, actor: Actor) -> str:
    """A single-use link to the sandbox page, signed in as the new owner (15 minutes)."""
    from crm.services.accounts.signin import do_issue_sign_in
    from crm.wiring.sandbox import sandbox_sign_in_url

    return sandbox_sign_in_url(settings.base_url, await do_issue_sign_in(actor))


async def _sandbox_connections_for(settings: Settings, tenant_id: int) -> list[dict[str, Any]]:
    """In sandbox mode every new tenant gets a WhatsApp number and a Telegram lead bot."""
    if not settings.sandbox_enabled:
        return []
    from crm.wiring import build_channels, describe
    from crm.wiring.sandbox import add_sandbox_connections

    wiring = build_channels(settings)
    try:
        infos = await add_sandbox_connections(wiring, tenant_id)
    finally:
        await wiring.close()
    return [{**describe(info, wiring), "kind": info.kind.value} for info in infos]


async def _channels_add(settings: Settings, args: argparse.Namespace) -> int:
    from crm.messaging import ChannelKind
    from crm.services.inbox.connections import NewConnection, connection_info, do_add_connection
    from crm.services.inbox.connections import sandbox_connection as sandbox_new
    from crm.wiring import build_channels, connection_setup, describe

    async def work() -> int:
        actor = await _owner_actor(args.tenant)
        wiring = build_channels(settings)
        kind = ChannelKind(args.kind)
        if args.sandbox:
            new = sandbox_new(kind, args.tenant, settings.base_url)
        elif kind is ChannelKind.WHATSAPP:
            new = NewConnection(
                kind=kind,
                credentials={
                    "token": args.token or "",
                    "app_secret": args.app_secret or "",
                    "verify_token": args.verify_token or "",
                },
                settings={
                    "phone_id": args.phone_id or "",
                    **({"waba_id": args.waba_id} if args.waba_id else {}),
                },
                display_name=args.name or "",
            )
        else:
            new = NewConnection(
                kind=kind,
                credentials={"token": args.token or ""},
                settings={},
                display_name=args.name or "",
            )
        try:
            row = await do_add_connection(actor, wiring.cipher, new, sandbox=args.sandbox)
            # In sandbox mode the running service registers it with its emulator on first use.
            error = None if args.sandbox else await connection_setup(wiring)(row)
        finally:
            await wiring.close()
        info = connection_info(row, wiring.cipher)
        if args.json:
            _print_json(describe(info, wiring))
        else:
            print(f"connection {info.id} ({info.kind.value}) added")
            print(f"webhook URL: {wiring.webhook_url(info)}")
        if error:
            print(f"crm: warning: {error}", file=sys.stderr)
        return 0

    return await _with_db(settings, work)


async def _owner_actor(tenant_id: int) -> Actor:
    """Act as the system in a tenant (the CLI runs with the operator's shell access)."""
    if not await Tenant.exists(id=tenant_id):
        raise SystemExit(f"crm: tenant {tenant_id} does not exist")
    return Actor.system(tenant_id)


async def _apikeys_create(settings: Settings, args: argparse.Namespace) -> int:
    async def work() -> int:
        actor = await _owner_actor(args.tenant)
        user_id = args.user
        if user_id is None:
            owner = (
                await Membership.filter(tenant_id=args.tenant, role=Role.OWNER)
                .order_by("id")
                .first()
            )
            user_id = owner.user_id if owner else None
        scopes = [s.strip() for s in args.scopes.split(",")] if args.scopes else None
        issued = await do_create_api_key(actor, args.name, scopes, for_user_id=user_id)
        if args.json:
            _print_json(
                {
                    "api_key_id": issued.api_key.id,
                    "api_key": issued.token,
                    "scopes": issued.api_key.scopes,
                }
            )
        else:
            print(f"API key {issued.api_key.id} (shown once, store it now): {issued.token}")
        return 0

    return await _with_db(settings, work)


async def _apikeys_revoke(settings: Settings, args: argparse.Namespace) -> int:
    async def work() -> int:
        actor = await _owner_actor(args.tenant)
        await do_revoke_api_key(actor, args.key_id)
        print(f"API key {args.key_id} revoked")
        return 0

    return await _with_db(settings, work)


async def _import_contacts(settings: Settings, args: argparse.Namespace) -> int:
    from crm.services.contacts.csv_import import do_import_contacts

    path = Path(args.file)
    if not path.is_file():
        raise SystemExit(f"crm: {path} is not a file")
    mapping = json.loads(args.mapping) if args.mapping else None
    total_bytes = path.stat().st_size

    async def work() -> int:
        actor = await _owner_actor(args.tenant)
        with path.open("rb") as source:

            def progress(rows_done: int) -> None:
                share = source.tell() / total_bytes if total_bytes else 1.0
                print(
                    f"\rcrm: imported {rows_done} rows ({share:.0%})",
                    end="",
                    file=sys.stderr,
                    flush=True,
                )

            result = await do_import_contacts(
                actor,
                source,
                dry_run=args.dry_run,
                mapping=mapping,
                overwrite=args.overwrite,
                progress=progress,
            )
        print(file=sys.stderr)
        _print_json(
            {
                "created": result.created,
                "updated": result.updated,
                "skipped": result.skipped,
                "errors": [e if isinstance(e, dict) else vars(e) for e in result.errors],
            }
        )
        return 0

    return await _with_db(settings, work)


async def _export_contacts(settings: Settings, args: argparse.Namespace) -> int:
    from crm.services.contacts.csv_export import export_contacts_csv

    async def work() -> int:
        actor = await _owner_actor(args.tenant)
        out = open(args.output, "w", encoding="utf-8", newline="") if args.output else sys.stdout
        try:
            async for chunk in export_contacts_csv(actor):
                out.write(chunk)
        finally:
            if out is not sys.stdout:
                out.close()
        return 0

    return await _with_db(settings, work)


def _async(command: AsyncCommand) -> Callable[[Settings, argparse.Namespace], int]:
    return lambda settings, args: asyncio.run(command(settings, args))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``crm``."""
    parser = argparse.ArgumentParser(prog="crm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run API, workers and scheduler in one process")
    up.add_argument("--host", default=None)
    up.add_argument("--port", type=int, default=None)
    up.add_argument("--log-level", default="info")
    up.set_defaults(run=cmd_up)

    sub.add_parser("migrate", help="apply database migrations").set_defaults(run=cmd_migrate)

    worker = sub.add_parser("worker", help="run a task worker (needs CRM_REDIS_URL)")
    worker.add_argument("--concurrency", type=int, default=10)
    worker.set_defaults(run=cmd_worker)
    sub.add_parser("scheduler", help="run the task scheduler (needs CRM_REDIS_URL)").set_defaults(
        run=cmd_scheduler
    )

    tenants = sub.add_parser("tenants", help="manage tenants").add_subparsers(
        dest="action", required=True
    )
    create = tenants.add_parser("create", help="create a tenant with an owner and an API key")
    create.add_argument("name")
    create.add_argument("--owner-telegram-id", type=int, default=None)
    create.add_argument("--owner-email", default=None)
    create.add_argument("--region", default="US", help="default phone region (ISO 3166)")
    create.add_argument("--json", action="store_true")
    create.set_defaults(run=_async(_tenants_create))

    keys = sub.add_parser("apikeys", help="manage API keys").add_subparsers(
        dest="action", required=True
    )
    kc = keys.add_parser("create", help="issue an API key")
    kc.add_argument("--tenant", type=int, required=True)
    kc.add_argument("--user", type=int, default=None, help="member the key acts for")
    kc.add_argument("--name", default="")
    kc.add_argument("--scopes", default=None, help="comma-separated: read,write,admin")
    kc.add_argument("--json", action="store_true")
    kc.set_defaults(run=_async(_apikeys_create))
    kr = keys.add_parser("revoke", help="revoke an API key")
    kr.add_argument("key_id", type=int)
    kr.add_argument("--tenant", type=int, required=True)
    kr.set_defaults(run=_async(_apikeys_revoke))

    chan = sub.add_parser("channels", help="manage lead channels").add_subparsers(
        dest="action", required=True
    )
    add = chan.add_parser("add", help="connect a WhatsApp number or a Telegram lead bot")
    add.add_argument("kind", choices=["whatsapp", "telegram"])
    add.add_argument("--tenant", type=int, required=True)
    add.add_argument("--sandbox", action="store_true", help="wire to the built-in emulator")
    add.add_argument("--phone-id", default=None, help="WhatsApp phone number id")
    add.add_argument("--waba-id", default=None, help="WhatsApp business account id")
    add.add_argument("--token", default=None, help="access token or bot token")
    add.add_argument("--app-secret", default=None, help="WhatsApp app secret")
    add.add_argument("--verify-token", default=None, help="WhatsApp webhook verify token")
    add.add_argument("--name", default=None, help="display name")
    add.add_argument("--json", action="store_true")
    add.set_defaults(run=_async(_channels_add))

    imp = sub.add_parser("import", help="import data").add_subparsers(dest="what", required=True)
    ic = imp.add_parser("contacts", help="import contacts from a CSV file")
    ic.add_argument("file")
    ic.add_argument("--tenant", type=int, required=True)
    ic.add_argument("--dry-run", action="store_true")
    ic.add_argument(
        "--overwrite",
        action="store_true",
        help="duplicates replace fields instead of filling empty ones",
    )
    ic.add_argument("--mapping", default=None, help='JSON: {"CSV header": "field"}')
    ic.set_defaults(run=_async(_import_contacts))

    exp = sub.add_parser("export", help="export data").add_subparsers(dest="what", required=True)
    ec = exp.add_parser("contacts", help="export contacts as CSV")
    ec.add_argument("--tenant", type=int, required=True)
    ec.add_argument("-o", "--output", default=None)
    ec.set_defaults(run=_async(_export_contacts))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``crm`` command."""
    args = build_parser().parse_args(argv)
    install_log_redaction()  # workers and the scheduler log lead data too
    settings = Settings()
    for secret in settings.secret_values():
        register_secret(secret)
    try:
        return int(args.run(settings, args) or 0)
    except ServiceError as exc:
        print(f"crm: {exc.detail}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
