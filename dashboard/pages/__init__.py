"""The dashboard's pages, one module each: its layout and, beside it, its callbacks.

Each module has ``register(app, ctx)``, called once per app by ``dashboard.app.create_app``.
"""
