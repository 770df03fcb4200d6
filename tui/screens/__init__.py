"""Screens and dialogs of the terminal UI, one module per feature."""
