"""REST routes of the inbox: connections and conversations."""
