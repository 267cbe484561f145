"""One module per CLI command; `cli.py` only wires them up."""
