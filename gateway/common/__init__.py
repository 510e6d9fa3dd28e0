"""Small helpers more than one stage uses: backoff with one jitter rule, a ``wait_for`` that never loses a
cancellation (``aio``), strict JSON output, the diagnostic socket's wire codec (server and CLI), the stored
timeseries batch layout (store and uplinks).

They sit beside :mod:`gateway.errors` and :mod:`gateway.model` at the bottom of the import graph:
they import nothing from the rest of the package but those two.
"""
