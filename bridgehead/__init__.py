"""Bridgehead's shared home: models, settings, data conversion, client and logging set-up.

Nothing in this package performs I/O at import time, so workflow modules may pass
`bridgehead.models` through the sandbox.
"""
