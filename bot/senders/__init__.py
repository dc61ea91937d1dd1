"""What the operator bot sends on events, on task workers, apart from the handlers of updates.

``notifications`` tells operators of a lead's messages and delivery, ``alerts`` of assignments,
overdue conversations and the daily digest, ``team_inbox`` posts to the team's forum topics.
"""
