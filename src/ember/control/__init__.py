"""The function registry and everything that validates what goes into it.

``validation`` and ``fields`` turn request bodies into typed, checked records;
``code`` inspects and safely extracts deployment packages (.zip files).
"""
