"""A package without entities: an empty registry."""
