"""Deterministic workflow code only: no I/O, clocks, randomness or boto3 here."""
