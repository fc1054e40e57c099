"""The standard program KPIs (the built-in ``rmcore_kpis`` plugin)."""
