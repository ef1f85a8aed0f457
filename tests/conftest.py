"""Shared fixtures: a tiny fake workload and fake submissions for testing the runner's rules."""
