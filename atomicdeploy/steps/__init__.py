"""One small module per step. Each step is a plain function `(remote, cfg)`, safe to re-run."""
