"""The ELM327 adapter: pure command builders, a sans-I/O answer classifier, and the session."""
