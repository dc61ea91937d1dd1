"""The inbox: connections, conversations, messages, media, lead notifications, the team inbox."""
