//! Integration tests of kafka-runtime; see `tests/`.
