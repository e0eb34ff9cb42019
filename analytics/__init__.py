"""Analytics: predictive maintenance, health index, RUL and quality (SPC) on historian windows.

Filled in by a later issue; the package exists so the layout is fixed.
"""
