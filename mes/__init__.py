"""MES: orders, OEE, downtime and lot genealogy derived from events.

Filled in by a later issue; the package exists so the layout is fixed.
"""
