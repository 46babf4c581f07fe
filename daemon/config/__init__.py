"""Configuration: dropd.toml and the partner files, read and validated in one pass."""
