"""The pipeline: pipelines, their stages, deals, and how the bot and agents look deals up."""
