"""Telegram plumbing both bots share: send rate limits, flood control and token scrubbing.

Neither the lead channel (``channels/telegram``) nor the operator bot (``bot/``) owns it; both
import it. ``limits`` loads aiogram, ``logs`` does not, so nothing is re-exported here.
"""
