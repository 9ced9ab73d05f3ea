"""A tiny test-only service that exercises the shared runtime without business logic."""
