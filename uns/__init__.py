"""The unified namespace: Shopfloor's samples and events on an MQTT broker under ISA-95 topics, in plain
JSON or Sparkplug B."""
