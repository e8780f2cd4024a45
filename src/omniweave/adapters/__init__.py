"""Adapters: everything that does I/O (stores, HTTP, files, channels), each behind a small interface."""
