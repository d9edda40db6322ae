"""Prefect tasks: thin adapters that call the forgetflow core and talk to one external system each."""
