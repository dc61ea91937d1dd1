"""REST routes of the pipeline: pipelines, stages and deals."""
