"""The ``starter`` CLI (``python -m starter``) and the embedded local stack."""
