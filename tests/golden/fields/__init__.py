"""Message fields of every kind: defaults, factories, aliases, kw_only, inheritance;
state in a subpackage; ids from the standard library; clashing type names."""
