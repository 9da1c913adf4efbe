"""Ember: a self-hosted serverless platform compatible with AWS Lambda.

This module stays import-free: the in-sandbox agent and runtime clients import
``ember.agent`` with ``-I -S`` and must not pull in anything from the server side.
"""

__version__ = "0.1.0"
