"""Subcommands of ``obd-gateway``; each module has ``register(subparsers)``."""
