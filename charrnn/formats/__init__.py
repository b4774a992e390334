"""What charrnn writes to disk: checkpoints, metrics.csv, and a run's config.toml."""
