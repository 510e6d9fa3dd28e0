"""Pure-Python twin of the native parser (placeholder until the parser lands)."""
