"""On-device runtime: numpy + a backend, never torch."""
