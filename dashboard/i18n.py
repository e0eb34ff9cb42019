"""Every word the dashboard shows, in English and Simplified Chinese, and the user's current language.

Plant terms follow the project glossary; state, loss and KPI names come from the MES's own tables.
"""

from __future__ import annotations

from typing import Literal

from flask import has_request_context, request

from mes.kpi import KPI_LABELS, WATERFALL_LABELS
from mes.losses import STATE_LABELS, StateCategory

Lang = Literal["en", "zh"]
LANGS: tuple[Lang, ...] = ("en", "zh")
COOKIE = "shopfloor_lang"
DEFAULT: list[Lang] = ["en"]  # set from the config at start

TEXT: dict[str, tuple[str, str]] = {
    # shell
    "app.title": ("Shopfloor — digital factory", "Shopfloor 数字化工厂平台"),
    "app.tagline": (
        "equipment networked · data visualised · process transparent · floor unmanned",
        "生产设备网络化 · 生产数据可视化 · 生产过程透明化 · 生产现场无人化",
    ),
    "nav.plant": ("Plant", "全厂总览"),
    "nav.line": ("Line", "产线"),
    "nav.asset": ("Asset", "设备"),
    "nav.maintenance": ("Maintenance", "预测性维护"),
    "nav.quality": ("Quality", "质量检测"),
    "nav.mes": ("MES", "生产执行"),
    "nav.system": ("System", "系统"),
    "lang.switch": ("中文", "English"),
    "auth.login": ("Log in", "登录"),
    "auth.logout": ("Log out", "退出"),
    "auth.user": ("User", "用户"),
    "auth.password": ("Password", "密码"),
    "auth.failed": ("Unknown user or wrong password.", "用户名或密码错误。"),
    "auth.role": ("Role", "角色"),
    "role.viewer": ("viewer", "访客"),
    "role.engineer": ("engineer", "工程师"),
    "role.admin": ("admin", "管理员"),
    "auth.forbidden": (
        "Your role may not do this: it needs engineer or admin.",
        "您的角色无权执行此操作：需要工程师或管理员。",
    ),
    # common
    "stale": ("stale", "数据过期"),
    "no_data": ("no data", "无数据"),
    "data_age": ("data age", "数据时效"),
    "health": ("health index", "健康指数"),
    "oee": ("OEE", "设备综合效率（OEE）"),
    "oee.short": ("OEE", "OEE"),
    "alarm": ("alarm", "报警"),
    "alarms": ("alarms", "报警"),
    "alert": ("alert", "预警"),
    "state": ("state", "状态"),
    "asset": ("asset", "设备"),
    "assets": ("assets", "设备"),
    "line": ("line", "产线"),
    "signal": ("signal", "信号"),
    "value": ("value", "数值"),
    "unit": ("unit", "单位"),
    "time": ("time", "时间"),
    "now": ("now", "当前"),
    "plant_clock": ("plant time", "工厂时间"),
    "shift": ("shift", "班次"),
    "current_shift": ("current shift", "当前班次"),
    "none": ("none", "无"),
    "s": ("s", "秒"),
    "min": ("min", "分钟"),
    "h": ("h", "小时"),
    "d": ("d", "天"),
    "last_hours": ("last {n} h", "最近 {n} 小时"),
    # plant
    "plant.title": ("Plant overview", "全厂总览"),
    "plant.legend": ("tile colour = state; click a tile for its asset", "色块颜色 = 状态；点击查看设备"),
    # asset / line
    "asset.title": ("Asset", "设备"),
    "asset.pick": ("choose an asset", "选择设备"),
    "asset.signals": ("signals", "信号"),
    "asset.rul": ("remaining useful life", "剩余使用寿命"),
    "asset.rul_band": ("band", "区间"),
    "asset.anomaly": ("anomaly score", "异常评分"),
    "asset.maintenance": ("maintenance history", "维护记录"),
    "asset.range": ("time range", "时间范围"),
    "line.title": ("Line", "产线"),
    "line.timeline": ("state timeline", "状态时间线"),
    "line.trends": ("live trends", "实时趋势"),
    "line.counts": ("counts against plan", "计划完成情况"),
    "line.energy": ("energy per tonne", "吨产品能耗"),
    "line.pick": ("choose a line", "选择产线"),
    # maintenance
    "mnt.title": ("Predicted failures", "预测性维护"),
    "mnt.rul": ("RUL", "剩余使用寿命"),
    "mnt.mode": ("failure mode", "失效模式"),
    "mnt.opened": ("opened", "开立时间"),
    "mnt.status": ("status", "状态"),
    "mnt.kind": ("kind", "类型"),
    "mnt.evidence": ("evidence", "依据"),
    "mnt.ack": ("Acknowledge", "确认"),
    "mnt.close": ("Close", "关闭"),
    "mnt.acked": ("acknowledged by {who}", "已由 {who} 确认"),
    "mnt.none": ("No open maintenance requests.", "当前没有未关闭的维护请求。"),
    "mnt.status.open": ("open", "未处理"),
    "mnt.status.acknowledged": ("acknowledged", "已确认"),
    "mnt.status.closed": ("closed", "已关闭"),
    "mnt.kind.equipment": ("equipment", "设备"),
    "mnt.kind.sensor_fault": ("sensor fault", "传感器故障"),
    "mnt.score": ("score", "评分"),
    # quality
    "q.title": ("Quality", "质量检测"),
    "q.spc": ("control chart", "控制图"),
    "q.violations": ("rule violations", "判异规则触发"),
    "q.capability": ("process capability", "过程能力指数"),
    "q.baseline": ("baseline (limits from)", "基准期（控制限来源）"),
    "q.inspection": ("surface inspection", "表面缺陷检测"),
    "q.lots": ("lots", "批次"),
    "q.trace": ("trace", "追溯"),
    "q.trace_lot": ("lot to trace", "追溯批次"),
    "q.results": ("quality results", "质量结果"),
    "q.verdict": ("verdict", "判定"),
    "q.characteristic": ("characteristic", "检测项"),
    "q.pick_signal": ("signal to chart", "控制图信号"),
    # mes
    "mes.title": ("Production", "生产执行"),
    "mes.orders": ("work orders", "工单"),
    "mes.waterfall": ("loss waterfall", "损失瀑布图"),
    "mes.pareto": ("downtime Pareto", "停机原因帕累托图"),
    "mes.by_shift": ("OEE by shift", "各班次 OEE"),
    "mes.reason": ("downtime reason", "停机原因"),
    "mes.duration": ("duration", "时长"),
    "mes.planned": ("planned quantity", "计划数量"),
    "mes.good": ("good quantity", "合格数量"),
    "mes.scrap": ("scrap", "报废"),
    "mes.product": ("product", "产品"),
    "mes.order": ("work order", "工单"),
    "mes.status": ("status", "状态"),
    "mes.no_shifts": ("No shifts configured (mes.shifts).", "未配置班次（mes.shifts）。"),
    "mes.unavailable": ("The MES database is not reachable.", "无法连接生产执行数据库。"),
    # system
    "sys.title": ("System", "系统"),
    "sys.writer": ("historian writer", "历史数据库写入"),
    "sys.sources": ("connectors", "连接器 / 采集驱动"),
    "sys.written": ("written", "已写入"),
    "sys.spooled": ("spooled", "已缓存"),
    "sys.replayed": ("replayed", "已补传"),
    "sys.quarantined": ("quarantined", "已隔离"),
    "sys.dropped": ("dropped", "已丢弃"),
    "sys.pending": ("pending", "待写入"),
    "sys.produced": ("produced", "已产生"),
    "sys.retries": ("retries", "重试"),
    "sys.spool_bytes": ("spool size", "缓存大小"),
    "sys.online": ("store online", "数据库在线"),
    "sys.yes": ("yes", "是"),
    "sys.no": ("no", "否"),
    "sys.connected": ("connected", "已连接"),
    "sys.samples": ("samples", "样本数"),
    "sys.rate": ("samples/s", "样本/秒"),
    "sys.errors": ("errors", "错误"),
    "sys.reconnects": ("reconnects", "重连次数"),
    "sys.gaps": ("gaps", "数据缺口"),
    "sys.failed_items": ("failed tags", "失败点位"),
    "sys.historian_down": ("The historian is not reachable: {why}", "无法连接历史数据库：{why}"),
    "sys.nothing_lost": (
        "produced = written + pending + quarantined + dropped: nothing disappears unseen",
        "已产生 = 已写入 + 待写入 + 已隔离 + 已丢弃：任何数据都不会无声丢失",
    ),
    # -- section A: line, asset and maintenance pages (add keys above this line) --
    # -- section B: quality and MES pages (add keys above this line) --
}


def current() -> Lang:
    """The language of the request being served (its cookie), else the configured default."""
    if has_request_context():
        v = request.cookies.get(COOKIE)
        if v in LANGS:
            return v  # type: ignore[return-value]
    return DEFAULT[0]


def t(key: str, lang: Lang | None = None, **fmt: object) -> str:
    """The text of ``key`` in ``lang`` (default: the current one); KeyError for a key nobody wrote."""
    en, zh = TEXT[key]
    s = zh if (lang or current()) == "zh" else en
    return s.format(**fmt) if fmt else s


def state_label(state: str, lang: Lang | None = None) -> str:
    try:
        en, zh = STATE_LABELS[StateCategory(state)]
    except ValueError:
        en, zh = STATE_LABELS[StateCategory.UNKNOWN]
    return zh if (lang or current()) == "zh" else en


def kpi_label(name: str, lang: Lang | None = None) -> str:
    en, zh = KPI_LABELS.get(name) or WATERFALL_LABELS.get(name) or (name, name)
    return zh if (lang or current()) == "zh" else en


def pair(en: str, zh: str, lang: Lang | None = None) -> str:
    """Pick from a label pair stored elsewhere (reason trees, config descriptions)."""
    return zh if (lang or current()) == "zh" and zh else en
