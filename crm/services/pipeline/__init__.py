"""The pipeline: pipelines, their stages, and deals."""
