"""The virtual plant: simulated equipment served over real OPC UA and Modbus TCP.

One vectorised model (``plant.Plant``) feeds the offline generator and both protocol servers.
"""

from plant_simulator.plant import Plant, PlantBlock, default_plant

__all__ = ["Plant", "PlantBlock", "default_plant"]
