"""rmcore's built-in plugins, installed as ``rmcore_plugins`` and loaded by entry point."""
