"""Numeric codes the simulator serves: asset states, down reasons and per-value status.

One table each, shared by the model, the Modbus map, the OPC UA server and the docs.
"""

from __future__ import annotations

from enum import IntEnum

from shopfloor.model import Quality


class State(IntEnum):
    """Asset state code (Modbus holding register 4, OPC UA variable ``state``)."""

    RUNNING = 1
    IDLE = 2
    SETUP = 3
    STARVED = 4
    BLOCKED = 5
    DOWN = 6
    PLANNED_MAINTENANCE = 7


STATE_ZH = {
    State.RUNNING: "运行",
    State.IDLE: "待机",
    State.SETUP: "换型调机",
    State.STARVED: "待料",
    State.BLOCKED: "堵料",
    State.DOWN: "停机",
    State.PLANNED_MAINTENANCE: "计划维护",
}


class Reason(IntEnum):
    """Why an asset is down or in setup (``down_reason``); 0 while running normally."""

    NONE = 0
    TOOL_BREAKAGE = 1
    SPINDLE_BEARING = 2
    MAIN_DRIVE_BEARING = 3
    HYDRAULIC_PUMP = 4
    PUMP_CAVITATION = 5
    GAS_SUPPLY_EMPTY = 6
    MINOR_STOP = 10
    MATERIAL_JAM = 11
    ELECTRICAL_FAULT = 12
    TOOL_CHANGE = 20
    PRODUCT_CHANGEOVER = 21
    CONSUMABLE_CHANGE = 22
    PLANNED_MAINTENANCE = 30


REASON_ZH = {
    Reason.NONE: "无",
    Reason.TOOL_BREAKAGE: "断刀",
    Reason.SPINDLE_BEARING: "主轴轴承故障",
    Reason.MAIN_DRIVE_BEARING: "主传动轴承故障",
    Reason.HYDRAULIC_PUMP: "液压泵故障",
    Reason.PUMP_CAVITATION: "冷却水泵气蚀",
    Reason.GAS_SUPPLY_EMPTY: "保护气耗尽",
    Reason.MINOR_STOP: "短暂停机",
    Reason.MATERIAL_JAM: "卡料",
    Reason.ELECTRICAL_FAULT: "电气故障",
    Reason.TOOL_CHANGE: "换刀",
    Reason.PRODUCT_CHANGEOVER: "换型",
    Reason.CONSUMABLE_CHANGE: "更换耗材",
    Reason.PLANNED_MAINTENANCE: "计划维护",
}


class Status(IntEnum):
    """Status of one served value; what a device would report about its own sensor."""

    GOOD = 0
    UNCERTAIN_LAST_USABLE = 1  # value frozen (stuck sensor detected by the device)
    UNCERTAIN_NOT_ACCURATE = 2  # plausibility check failed (drift beyond the redundancy limit)
    BAD_SENSOR_FAILURE = 3  # open circuit / dropout: no value


STATUS_QUALITY = {
    Status.GOOD: Quality.GOOD,
    Status.UNCERTAIN_LAST_USABLE: Quality.UNCERTAIN,
    Status.UNCERTAIN_NOT_ACCURATE: Quality.UNCERTAIN,
    Status.BAD_SENSOR_FAILURE: Quality.BAD,
}

#: OPC UA StatusCode names (asyncua ``ua.StatusCodes`` attributes) for each status.
STATUS_OPCUA = {
    Status.GOOD: "Good",
    Status.UNCERTAIN_LAST_USABLE: "UncertainLastUsableValue",
    Status.UNCERTAIN_NOT_ACCURATE: "UncertainSensorNotAccurate",
    Status.BAD_SENSOR_FAILURE: "BadSensorFailure",
}

#: Lookup array: status code -> Quality value.
QUALITY_OF_STATUS = [int(STATUS_QUALITY[Status(i)]) for i in range(len(Status))]
