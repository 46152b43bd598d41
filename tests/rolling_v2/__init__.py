"""Version 2 of `rolling_v1`: the counter's state is at version 2 (a field
renamed, with an upgrader, and a new field) and it takes a new message
class, `Tag`. Same entity types, same stored shapes for everything else."""
