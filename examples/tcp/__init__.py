"""A TCP-like stream through a proxy: what reordering, loss and duplication do
to "hello," " world" "!", and how sequence numbers, acks and retransmission fix it."""
