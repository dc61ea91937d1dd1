"""Fixtures of the AI tests: the service app with its assistant, the sandbox model on loopback."""

from tests.support.ai_fixtures import ai, model_base

__all__ = ["ai", "model_base"]
