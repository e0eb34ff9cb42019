"""The MES loss vocabulary: asset state categories, the loss classes of the OEE model, and the reason tree.

States come from the PLC as codes; each maps to a category, and each stop to a loss through its reason.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class StateCategory(StrEnum):
    """What an asset is doing, whatever code its PLC uses for it."""

    RUNNING = "running"
    IDLE = "idle"
    SETUP = "setup"
    STARVED = "starved"
    BLOCKED = "blocked"
    DOWN = "down"
    PLANNED_MAINTENANCE = "planned_maintenance"
    UNKNOWN = "unknown"  # a code the config does not map, or no good state sample yet


STATE_LABELS: dict[StateCategory, tuple[str, str]] = {
    StateCategory.RUNNING: ("Running", "运行"),
    StateCategory.IDLE: ("Idle", "待机"),
    StateCategory.SETUP: ("Setup", "换型调机"),
    StateCategory.STARVED: ("Starved", "待料"),
    StateCategory.BLOCKED: ("Blocked", "堵料"),
    StateCategory.DOWN: ("Down", "停机"),
    StateCategory.PLANNED_MAINTENANCE: ("Planned maintenance", "计划维护"),
    StateCategory.UNKNOWN: ("Unknown", "未知"),
}


class Loss(IntEnum):
    """Where a stretch of time goes in the loss waterfall (calendar time down to fully productive time).

    Availability losses: BREAKDOWN, SETUP, UNPLANNED_STOP. Performance losses: MINOR_STOP, plus the
    reduced-speed loss computed from counts. Quality losses are computed from counts too.
    """

    RUNNING = 0  # actual production time
    NOT_SCHEDULED = 1  # outside every shift of the calendar
    PLANNED_DOWNTIME = 2  # planned maintenance, breaks and planned stops inside a shift
    BREAKDOWN = 3  # equipment failure (six big losses: 1)
    SETUP = 4  # setup and adjustment (six big losses: 2)
    UNPLANNED_STOP = 5  # idle, starved, blocked or unexplained stops longer than a micro-stop
    MINOR_STOP = 6  # any unplanned stop shorter than the micro-stop threshold (six big losses: 3)


LOSS_LABELS: dict[Loss, tuple[str, str]] = {
    Loss.RUNNING: ("Running", "运行"),
    Loss.NOT_SCHEDULED: ("Not scheduled", "非计划工作时间"),
    Loss.PLANNED_DOWNTIME: ("Planned downtime", "计划停机"),
    Loss.BREAKDOWN: ("Breakdowns", "设备故障"),
    Loss.SETUP: ("Setup and adjustment", "换型调机"),
    Loss.UNPLANNED_STOP: ("Unplanned stops", "非计划停机"),
    Loss.MINOR_STOP: ("Micro-stops", "短暂停机"),
}

#: The loss of a stop of each state category when its reason says nothing more specific.
DEFAULT_STATE_LOSS: dict[StateCategory, Loss] = {
    StateCategory.RUNNING: Loss.RUNNING,
    StateCategory.IDLE: Loss.UNPLANNED_STOP,
    StateCategory.SETUP: Loss.SETUP,
    StateCategory.STARVED: Loss.UNPLANNED_STOP,
    StateCategory.BLOCKED: Loss.UNPLANNED_STOP,
    StateCategory.DOWN: Loss.BREAKDOWN,
    StateCategory.PLANNED_MAINTENANCE: Loss.PLANNED_DOWNTIME,
    StateCategory.UNKNOWN: Loss.UNPLANNED_STOP,
}

UNASSIGNED = "unassigned"


def loss_of(
    category: StateCategory, reason_loss: Loss | None, duration_s: float, micro_stop_s: float
) -> Loss:
    """The loss of one state interval.

    Running is production time. A planned stop stays planned whatever its length. Any other stop shorter
    than ``micro_stop_s`` is a micro-stop (a performance loss, not an availability loss); longer ones take
    the loss of their reason, or of their state category when the reason has none.
    """
    if category is StateCategory.RUNNING:
        return Loss.RUNNING
    loss = reason_loss if reason_loss is not None else DEFAULT_STATE_LOSS[category]
    if loss in (Loss.PLANNED_DOWNTIME, Loss.NOT_SCHEDULED, Loss.RUNNING):
        return loss
    if duration_s < micro_stop_s:
        return Loss.MINOR_STOP
    return loss


class SixBigLoss(StrEnum):
    """Nakajima's six big losses, the grouping plant people use for the waterfall."""

    EQUIPMENT_FAILURE = "equipment_failure"
    SETUP_ADJUSTMENT = "setup_adjustment"
    IDLING_MINOR_STOPS = "idling_minor_stops"
    REDUCED_SPEED = "reduced_speed"
    PROCESS_DEFECTS = "process_defects"
    REDUCED_YIELD = "reduced_yield"
