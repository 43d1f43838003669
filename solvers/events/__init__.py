"""Events: integrate until event functions cross zero (`solve_events`), the root finder on
the dense output (`root`) and the event time's implicit-function gradient (`gradient`)."""
