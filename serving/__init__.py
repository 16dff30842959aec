"""bertkit serving package (see DESIGN.md)."""
