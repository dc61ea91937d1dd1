"""Operator bot routers of the pipeline: deal cards and stage moves."""
