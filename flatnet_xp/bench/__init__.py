"""Cross-backend benchmarks: configurations, implementations, runner, environment record."""
