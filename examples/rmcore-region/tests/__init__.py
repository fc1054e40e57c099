"""Tests of the rmcore-region plugins (a package, so its conftest keeps a name of its own)."""
