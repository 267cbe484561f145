"""Code vendored from reference implementations, for tests that compare the project against them."""
