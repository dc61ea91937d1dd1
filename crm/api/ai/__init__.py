"""REST routes of the AI: settings, modes, drafts, intents, memory, knowledge, agents."""
