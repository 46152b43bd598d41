"""State classes, in a subpackage."""
