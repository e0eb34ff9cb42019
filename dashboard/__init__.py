"""Dashboard: the Dash app that shows the live, transparent floor in English and Chinese.

Filled in by a later issue; the package exists so the layout is fixed.
"""
