"""The Telegram Mini App and the admin web page."""
