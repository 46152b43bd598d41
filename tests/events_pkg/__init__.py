"""Event-sourced entities the event tests run on every ecosystem."""
