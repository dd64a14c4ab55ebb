"""Benchmarks: `make bench` runs them all and prints the README's table."""
