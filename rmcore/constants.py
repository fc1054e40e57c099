"""Constants shared by the engine, the plugins and the command line; importing it is free."""

DEFAULT_PROGRAM = "default"
"""The program commands work on when ``--program`` is not given."""

GROUP_BY: dict[str, str] = {"generation": "generation", "department": "department"}
"""The KPI ``--by`` dimensions and the ``people`` column each one groups on."""

MIN_GROUP_SIZE = 5
"""KPI groups with fewer people than this are suppressed, so no one can be singled out."""
