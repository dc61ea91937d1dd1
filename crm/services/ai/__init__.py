"""The AI's records: settings, modes, drafts, intents, memory, knowledge, agents and their runs."""
