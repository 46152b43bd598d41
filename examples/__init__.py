"""Runnable examples of pachytype entities."""
