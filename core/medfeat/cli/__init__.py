"""The ``medfeat`` command line."""
