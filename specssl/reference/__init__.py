"""Reference transcriptions of the authors' code (tests and benchmarks only)."""
