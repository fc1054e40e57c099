"""Two-way skill-complementarity matching (the built-in ``rmcore_match`` strategy)."""
