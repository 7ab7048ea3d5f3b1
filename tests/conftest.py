"""Shared pytest setup: in CI a missing service fails the run; it never skips."""
