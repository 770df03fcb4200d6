"""Widgets of the terminal UI, one module per feature."""
