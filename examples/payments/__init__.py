"""Payments: orders paid through a worker that calls an outside provider.

An `Order` (one per order id) asks the `Payments` worker to charge the
customer by returning a request with its own address as the reply address;
the worker calls the provider over HTTP (`provider.py`: a small local
payment service that can fail, stall and lose answers) with the request's
idempotency key, retrying with backoff; the provider charges each key once.
The result comes back to the order exactly once. An order cancelled (or
timed out) before its charge lands asks the `Refunds` worker to give the
money back when the charge arrives after all: the cancel-vs-charged race.
"""
