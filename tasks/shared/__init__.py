"""What the facade and the workers share, and nothing that loads a model: the settings,
the Redis layout, image checks and decoding, the output files and document, the logs and
the task graph."""
