"""How updates reach the bot: getUpdates, or webhook pushes with retries and quirks."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import re
from typing import Any

import httpx

from sandbox.telegram.dispatch import MethodDispatch
from sandbox.telegram.records import BotState, Webhook
from sandbox.telegram.wire import SECRET_HEADER, Params, TelegramApiError, bad_request, unix_now

logger = logging.getLogger(__name__)

# Telegram's default when allowed_updates is empty: everything but these three.
_OPT_IN_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
_SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


class UpdateDelivery(MethodDispatch):
    """Webhook settings, getUpdates and the pushes to webhooks."""

    def set_webhook(
        self,
        token: str,
        url: str,
        secret_token: str | None = None,
        allowed_updates: list[str] | None = None,
    ) -> None:
        """``setWebhook`` from Python, for wiring that runs before any bot makes a call."""
        bot = self._by_token.get(token)
        if bot is None:
            raise ValueError("no bot is registered with this token")
        raw: dict[str, Any] = {"url": url, "secret_token": secret_token}
        if allowed_updates is not None:
            raw["allowed_updates"] = allowed_updates
        try:
            self._m_setwebhook(bot, Params(raw, {}))
        except TelegramApiError as exc:
            raise ValueError(exc.description) from None
        self._changed()

    def _m_setwebhook(self, bot: BotState, params: Params) -> Any:
        url = params.string("url") or ""
        if not url:
            return self._remove_webhook(bot, drop=params.flag("drop_pending_updates"))
        if not url.startswith(("http://", "https://")):
            raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        secret = params.string("secret_token")
        if secret is not None and not _SECRET_RE.match(secret):
            raise bad_request("bad webhook: secret token contains unallowed characters")
        allowed = params.value("allowed_updates")
        if allowed is not None and not isinstance(allowed, list):
            raise bad_request("can't parse allowed_updates JSON object")
        previous = bot.webhook
        bot.webhook = Webhook(
            url=url,
            secret_token=secret,
            allowed_updates=allowed
            if allowed is not None
            else (previous.allowed_updates if previous else None),
            max_connections=params.integer("max_connections") or 40,
        )
        if params.flag("drop_pending_updates"):
            bot.pending.clear()
            self._drop_outbox(bot)
        else:
            # Updates waiting for getUpdates now go to the webhook.
            while bot.pending:
                self._enqueue_push(bot, bot.pending.popleft(), copies=1)
        return True

    def _m_deletewebhook(self, bot: BotState, params: Params) -> Any:
        return self._remove_webhook(bot, drop=params.flag("drop_pending_updates"))

    def _remove_webhook(self, bot: BotState, *, drop: bool) -> bool:
        bot.webhook = None
        waiting = list(bot.outbox)
        self._drop_outbox(bot)
        if drop:
            bot.pending.clear()
        else:
            seen: set[int] = set()
            for update in waiting:
                if update["update_id"] not in seen:
                    seen.add(update["update_id"])
                    bot.pending.append(update)
        return True

    def _drop_outbox(self, bot: BotState) -> None:
        dropped = len(bot.outbox)
        bot.outbox.clear()
        self._settle(dropped)

    def _m_getwebhookinfo(self, bot: BotState, params: Params) -> Any:
        hook = bot.webhook
        info: dict[str, Any] = {
            "url": hook.url if hook else "",
            "has_custom_certificate": False,
            "pending_update_count": len(bot.pending) + len(bot.outbox),
        }
        if hook is not None:
            info["max_connections"] = hook.max_connections
            if hook.allowed_updates:
                info["allowed_updates"] = hook.allowed_updates
            if hook.last_error_date is not None:
                info["last_error_date"] = hook.last_error_date
                info["last_error_message"] = hook.last_error_message
        return info

    async def _m_getupdates(self, bot: BotState, params: Params) -> Any:
        if bot.webhook is not None:
            raise TelegramApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = params.integer("offset")
        limit = max(1, min(100, params.integer("limit") or 100))
        timeout = max(0, params.integer("timeout") or 0)
        allowed = params.value("allowed_updates")
        if allowed is not None:
            bot.poll_allowed_updates = allowed or None
        if offset is not None:
            if offset < 0:
                while len(bot.pending) > -offset:
                    bot.pending.popleft()
            else:
                while bot.pending and bot.pending[0]["update_id"] < offset:
                    bot.pending.popleft()
        if not bot.pending and timeout:
            signal = bot.poll_signal = bot.poll_signal or asyncio.Event()
            signal.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(signal.wait(), timeout)
        return list(itertools.islice(bot.pending, limit))

    @staticmethod
    def _kind_of(update: dict[str, Any]) -> str:
        return next(k for k in update if k != "update_id")

    def _emit(self, bot: BotState, update: dict[str, Any]) -> None:
        self._changed()
        bot.history.append(update)
        allowed = bot.webhook.allowed_updates if bot.webhook else bot.poll_allowed_updates
        kind = self._kind_of(update)
        if allowed:
            if kind not in allowed:
                return
        elif kind in _OPT_IN_UPDATES:
            return
        if bot.webhook is None:
            bot.pending.append(update)
            if bot.poll_signal is not None:
                bot.poll_signal.set()
            return
        self._enqueue_push(bot, update, copies=1 + self._duplicates)

    def _enqueue_push(self, bot: BotState, update: dict[str, Any], *, copies: int) -> None:
        bot.outbox.extend([update] * copies)
        self._in_flight += copies
        if self._idle is not None:
            self._idle.clear()
        if bot.worker is None or bot.worker.done():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # wiring outside a loop: the next update starts the pusher
            bot.worker = loop.create_task(self._push_loop(bot))

    def _settle(self, count: int) -> None:
        self._in_flight = max(0, self._in_flight - count)
        if self._in_flight == 0 and self._idle is not None:
            self._idle.set()

    async def _push_loop(self, bot: BotState) -> None:
        # Telegram pushes one bot's updates one at a time; a slow receiver delays the rest.
        if self._shuffle:
            await asyncio.sleep(self.shuffle_window)  # let a burst land so it can be reordered
        while bot.outbox and bot.webhook is not None:
            if self._shuffle:
                bot.outbox.rotate(-self._rng.randrange(len(bot.outbox)))
            update = bot.outbox.popleft()
            try:
                await self._push(bot, update)
            finally:
                self._settle(1)
                self._changed()

    async def _push(self, bot: BotState, update: dict[str, Any]) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.webhook_timeout)
        body = json.dumps(update).encode()
        for delay in (0.0, *self.webhook_retry_delays):
            if delay:
                await asyncio.sleep(delay)
            hook = bot.webhook
            if hook is None:
                bot.pending.append(update)
                return
            headers = {"Content-Type": "application/json"}
            if hook.secret_token:
                headers[SECRET_HEADER] = hook.secret_token
            try:
                response = await self._client.post(hook.url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                hook.last_error_date = unix_now()
                hook.last_error_message = f"Connection failed: {type(exc).__name__}"
                continue
            if 200 <= response.status_code < 300:
                await self._run_webhook_reply(bot, response)
                return
            hook.last_error_date = unix_now()
            hook.last_error_message = (
                f"Wrong response from the webhook: {response.status_code} {response.reason_phrase}"
            )
        logger.warning(
            "sandbox telegram: update %s of %s not delivered to its webhook",
            update["update_id"],
            bot.connection_id,
        )
        bot.failed_deliveries.append(update)

    async def _run_webhook_reply(self, bot: BotState, response: httpx.Response) -> None:
        """A webhook may answer with a Bot API call: Telegram runs it."""
        if not response.headers.get("content-type", "").startswith("application/json"):
            return
        try:
            reply = response.json()
        except ValueError:
            return
        if isinstance(reply, dict) and isinstance(reply.get("method"), str):
            params = {k: v for k, v in reply.items() if k != "method"}
            status, body = await self.call_method(bot.token, reply["method"], params)
            if status != 200:
                logger.info(
                    "sandbox telegram: webhook reply %s failed: %s",
                    reply["method"],
                    body.get("description"),
                )

    async def drain(self, within: float = 30.0) -> None:
        """Wait (up to ``within`` seconds) until every pending webhook push was delivered."""
        if self._in_flight == 0:
            return
        if self._idle is None:
            self._idle = asyncio.Event()
        self._idle.clear()
        if self._in_flight == 0:
            return
        await asyncio.wait_for(self._idle.wait(), within)
