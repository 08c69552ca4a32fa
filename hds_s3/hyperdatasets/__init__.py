"""The new API (filled in below)."""
