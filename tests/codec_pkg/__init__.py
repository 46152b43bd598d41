"""A small package of entities for codec tests: every id kind, a union state,
and a narrowed address whose type is imported only under TYPE_CHECKING."""
