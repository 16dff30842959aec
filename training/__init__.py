"""bertkit training package (see DESIGN.md)."""
