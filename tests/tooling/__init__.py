"""Test tooling (not tests): helpers the test modules import, e.g. the headless-browser check of the report."""
