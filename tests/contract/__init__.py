"""The store contract suite: one suite, every store."""
