"""Seed 000's application package, as a user would write it (imports point at backbeat)."""
