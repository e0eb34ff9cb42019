"""Test support shipped with Shopfloor: real servers on loopback for tests, benchmarks and demos.

Integrators use it too, e.g. to run their connector against a real InfluxDB.
"""
