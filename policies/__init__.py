"""IAM policies and CloudFormation templates as data (JSON), loaded by :mod:`bridgehead.policies`.

A package so that the built wheel carries them next to the code that renders them.
"""
