"""The inbox: connections, conversations, inbound and outbound messages, media, the team inbox."""
