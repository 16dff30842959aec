"""bertkit data package (see DESIGN.md)."""
