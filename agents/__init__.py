"""AI access: models through litellm, prompts, agents, tools, guardrails, memory."""
