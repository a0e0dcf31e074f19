"""Test peers that are not shipped: the SES-compatible test server and scratch databases.

Tests, benchmarks and the chaos run use them (``scripts/`` run from the repository root).
"""
