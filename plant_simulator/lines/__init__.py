"""Physics of each kind of simulated equipment, one module per family.

Each model turns a block of state/degradation arrays into its signals with numpy.
"""
