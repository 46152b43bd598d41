"""Tests of event-sourced entities, event streams and projections."""
