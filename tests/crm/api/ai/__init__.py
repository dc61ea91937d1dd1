"""Tests of the AI REST routes (crm/api/ai)."""
