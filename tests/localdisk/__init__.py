"""Tests of LocalDisk (SQLite): restart, crash, disk full, files, lock, poison, CLI."""
