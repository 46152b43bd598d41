"""Ping-pong: two entities in two modules that message each other, the
answer going to a narrowed reply address (`reply_to: Address[Pong]`)."""
