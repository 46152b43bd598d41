"""A counter: the smallest entity."""
