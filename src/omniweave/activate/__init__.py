"""activate."""
