"""Prefect flows: wiring only (order, branching, error policy). The steps live in tasks/."""
