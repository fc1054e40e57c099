"""Email notifications delivered from the log (the built-in ``rmcore_on_event`` plugin)."""
