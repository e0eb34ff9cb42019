"""Example Shopfloor connector plugin: a CSV file of readings replayed as a live source.

Written as a template for integrators; see README.md for the walk-through.
"""
