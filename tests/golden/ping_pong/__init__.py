"""Two entities in two modules that message each other, through a narrowed address."""
