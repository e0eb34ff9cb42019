"""The plant config: one YAML file, typed models, and errors located by file, line and key.

Import ``load_plant_config`` to read a file; ``ConfigError.issues`` lists what is wrong.
"""

from shopfloor.config.errors import ConfigError, ConfigIssue
from shopfloor.config.load import json_schema, load_plant_config, parse_plant_config
from shopfloor.config.schema import HistorianConfig, PlantConfig

__all__ = [
    "ConfigError",
    "ConfigIssue",
    "HistorianConfig",
    "PlantConfig",
    "json_schema",
    "load_plant_config",
    "parse_plant_config",
]
