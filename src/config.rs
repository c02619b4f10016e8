//! Configuration layering: CLI > WICK_* env > models.toml > default.
