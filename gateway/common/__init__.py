"""Small helpers every stage uses: backoff with one jitter rule, strict JSON output, the diag wire codec.

They sit beside :mod:`gateway.errors` and :mod:`gateway.model` at the bottom of the import graph:
they import nothing from the rest of the package.
"""
