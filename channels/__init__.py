"""Messenger channels: one folder per messenger, each adapting an SDK to crm ports."""
