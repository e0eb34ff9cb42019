"""The MQTT source connector: third-party JSON and Sparkplug B publishers mapped into the asset tree.

Registered as ``mqtt`` in the entry-point group ``shopfloor.connectors`` (docs/connectors-mqtt.md).
"""

# config: settings and tag grammar; paths: value/timestamp paths; json_map: JSON messages -> rows;
# sparkplug_map: Sparkplug B through uns.sparkplug.HostDecoder, deaths -> Bad; connector: the client.
