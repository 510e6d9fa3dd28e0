# cython: language_level=3
"""Native build of the parser; the API and results are those of gateway.obd.pyparser (placeholder)."""
