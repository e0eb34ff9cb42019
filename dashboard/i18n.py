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
    "sensor_fault": ("sensor fault", "传感器故障"),
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
    # line page
    "line.signal": ("signal to trend", "趋势信号"),
    "line.now": ("assets now", "设备实时状态"),
    "line.no_orders": ("No work orders on this line.", "该产线暂无工单。"),
    "line.progress": ("progress", "完成率"),
    "line.energy_kwh": ("energy", "能耗"),
    "line.output_t": ("output", "产量"),
    "line.good_units": ("good units", "合格品数"),
    "line.no_intervals": (
        "The MES has no state records in this window.",
        "此时间段内生产执行系统无状态记录。",
    ),
    "line.unknown": ("Unknown line {path}.", "未知产线 {path}。"),
    "line.order.planned": ("planned", "已计划"),
    "line.order.released": ("released", "已下达"),
    "line.order.running": ("running", "生产中"),
    "line.order.completed": ("completed", "已完成"),
    "line.order.cancelled": ("cancelled", "已取消"),
    "line.energy_none": (
        "No mass produced in this shift: energy per tonne is undefined.",
        "本班次无产量：吨产品能耗无法计算。",
    ),
    # asset page
    "asset.kind": ("kind", "设备类型"),
    "asset.pdm": ("predictive maintenance", "预测性维护"),
    "asset.description": ("description", "描述"),
    "asset.latest": ("latest value", "最新值"),
    "asset.no_signals": ("This asset has no numeric signals.", "该设备没有数值信号。"),
    "asset.unknown": ("Unknown asset {path}.", "未知设备 {path}。"),
    "asset.zoom_hint": (
        "drag across the chart to zoom in (finer detail is fetched); double-click to return",
        "在图上拖选可放大（自动加载更精细的数据）；双击恢复",
    ),
    "asset.resolution": ("one point per {d} ({n} points)", "每点 {d}（共 {n} 点）"),
    "asset.health_now": ("health index now", "当前健康指数"),
    "asset.rul_now": ("RUL now", "当前剩余使用寿命"),
    "asset.anomaly_now": ("anomaly score now", "当前异常评分"),
    "asset.no_analytics": (
        "no data: predictive analytics has not scored this asset in this window",
        "无数据：此时间段内预测分析尚未对该设备评分",
    ),
    "asset.requests": ("maintenance requests", "维护请求"),
    "asset.no_requests": ("No maintenance requests for this asset.", "该设备没有维护请求。"),
    "asset.stops": ("recent stops", "近期停机"),
    "asset.no_stops": ("No stops in the last {n} days.", "最近 {n} 天内没有停机。"),
    "asset.scored_at": ("scored at", "评分时间"),
    "asset.start": ("start", "开始"),
    "asset.ongoing": ("ongoing", "进行中"),
    "asset.by": ("by", "处理人"),
    "asset.plc": ("PLC", "PLC"),
    "range.1h": ("1 h", "1 小时"),
    "range.8h": ("8 h", "8 小时"),
    "range.24h": ("24 h", "24 小时"),
    "range.7d": ("7 d", "7 天"),
    "reason.unassigned": ("not yet assigned", "待分配"),
    # maintenance page
    "mnt.ranked": (
        "most urgent first: shortest remaining useful life, equipment before sensor faults",
        "按紧急程度排序：剩余使用寿命最短者在前，同等情况下设备故障先于传感器故障",
    ),
    "mnt.actions": ("actions", "操作"),
    "mnt.updated": ("last change", "最近变更"),
    "mnt.done.acknowledged": ("Request #{id} acknowledged by {who}.", "请求 #{id} 已由 {who} 确认。"),
    "mnt.done.closed": ("Request #{id} closed by {who}.", "请求 #{id} 已由 {who} 关闭。"),
    "mnt.refused": (
        "Request #{id} cannot change now: it is {status}.",
        "请求 #{id} 当前为“{status}”，无法变更。",
    ),
    "mnt.missing": ("There is no request #{id}.", "不存在请求 #{id}。"),
    "mode.tool_wear": ("tool wear", "刀具磨损"),
    "mode.spindle_bearing": ("spindle bearing", "主轴轴承"),
    "mode.main_drive_bearing": ("main drive bearing", "主传动轴承"),
    "mode.hydraulic_pump": ("hydraulic pump", "液压泵"),
    "mode.cooling_water_pump_cavitation": ("cooling-water pump cavitation", "冷却水泵气蚀"),
    "mode.slitter_knife": ("slitter knife", "分切刀"),
    "mode.guide_roll_fouling": ("guide roll fouling", "导辊结垢"),
    "mode.gas_supply": ("shielding gas supply", "保护气供应"),
    "dropdown.search": ("Search", "搜索"),
    "dropdown.clear_search": ("Clear search", "清除搜索"),
    "dropdown.none_found": ("Nothing matches", "无匹配项"),
    # units shown next to numbers (a unit without a key is shown as the config spells it)
    "unit.degC": ("°C", "°C"),
    "unit.parts": ("parts", "件"),
    "unit.units": ("units", "件"),
    "unit.coils": ("coils", "卷"),
    "unit.heats": ("heats", "炉"),
    "unit.billets": ("billets", "根"),
    "unit.batches": ("batches", "批"),
    "unit.defects": ("defects", "个"),
    "unit.t": ("t", "吨"),
    "unit.kWh": ("kWh", "千瓦时"),
    "unit.kWh/t": ("kWh/t", "千瓦时/吨"),
    # -- section A: line, asset and maintenance pages (add keys above this line) --
    # quality page
    "q.pick_asset": ("asset to chart", "控制图设备"),
    "q.window": ("window", "时间范围"),
    "q.baseline_first": ("first {n} h of the data shown", "所示数据的最初 {n} 小时"),
    "q.rules": ("run rules", "判异准则"),
    "q.rules.nelson": ("Nelson (8 tests)", "Nelson 八项判异准则"),
    "q.rules.western_electric": ("Western Electric (4 rules)", "西方电气四项判异准则"),
    "q.mean_of": ("{bucket} mean", "{bucket} 均值"),
    "q.centre": ("centre line", "中心线"),
    "q.ucl": ("UCL", "上控制限"),
    "q.lcl": ("LCL", "下控制限"),
    "q.violation": ("violation", "判异点"),
    "q.baseline_short": ("baseline", "基准期"),
    "q.baseline_note": (
        "Control limits from the baseline {start} – {end} ({n} points, each a {bucket} mean): centre {mean},"
        " σ = MR̄/d2 = {sigma}. Only the points after it are judged.",
        "控制限来自基准期 {start} – {end}（{n} 个点，每点为 {bucket} 均值）：中心线 {mean}，σ = MR̄/d2 = {sigma}。"
        "仅判定基准期之后的点。",
    ),
    "q.baseline_too_small": (
        "No control limits: {n} points in the baseline {start} – {end}, at least {min} needed.",
        "无控制限：基准期 {start} – {end} 内只有 {n} 个点，至少需要 {min} 个。",
    ),
    "q.baseline_flat": (
        "No control limits: the baseline {start} – {end} does not vary (every moving range is 0), so σ"
        " cannot be estimated.",
        "无控制限：基准期 {start} – {end} 内数据无波动（移动极差均为 0），无法估计 σ。",
    ),
    "q.no_signal": (
        "Nothing to chart: no asset has a numeric process signal with a configured range.",
        "无可绘制的信号：没有设备配置了带范围的数值过程信号。",
    ),
    "q.no_violations": ("No rule violations after the baseline.", "基准期之后无判异规则触发。"),
    "q.rule": ("rule", "判异准则"),
    "q.points": ("points", "点数"),
    "q.last_at": ("last at", "最近一次"),
    "q.index": ("index", "指数"),
    "q.estimate": ("estimate", "估计值"),
    "q.ci": ("{p} % confidence interval", "{p}% 置信区间"),
    "q.mean": ("mean", "均值"),
    "q.statistic": ("statistic", "统计量"),
    "q.sigma_within": ("σ within (MR̄/d2)", "组内 σ（MR̄/d2）"),
    "q.sigma_overall": ("σ overall (sample)", "整体 σ（样本标准差）"),
    "q.spec_from_range": (
        "Spec limits LSL {lsl} / USL {usl} {unit}: the signal's configured range in the plant config,"
        " not a drawing tolerance.",
        "规格限 LSL {lsl} / USL {usl} {unit}：取自工厂配置中该信号的设定范围，并非图纸公差。",
    ),
    "q.no_spec": (
        "No spec limits: the signal has no range in the plant config, so no capability indices.",
        "无规格限：工厂配置中该信号未设定范围，因此不计算过程能力指数。",
    ),
    "q.cap_data": (
        "Of the {n} points after the baseline, each a {bucket} mean (means vary less than single readings).",
        "基于基准期之后的 {n} 个点，每点为 {bucket} 均值（均值的波动小于单次读数）。",
    ),
    "q.cap_too_few": (
        "No capability: {n} points after the baseline, at least {min} needed, and they must vary.",
        "不计算过程能力：基准期之后只有 {n} 个点（至少需要 {min} 个且须有波动）。",
    ),
    "q.defects": ("defect prediction", "缺陷预测"),
    "q.no_defects": (
        "No defect prediction in the historian: no asset publishes a signal named defect.*.",
        "历史数据库中没有缺陷预测：没有设备发布名为 defect.* 的信号。",
    ),
    "q.probability": ("probability", "概率"),
    "q.no_inspections": ("No surface inspection results yet.", "暂无表面缺陷检测结果。"),
    "q.verdict.pass": ("pass", "合格"),
    "q.verdict.fail": ("fail", "不合格"),
    "q.verdict.unknown": ("not judged", "未判定"),
    "q.char.surface": ("no defect", "无缺陷"),
    "q.char.scratch": ("scratch", "划伤"),
    "q.char.hole": ("hole", "孔洞"),
    "q.char.inclusion": ("inclusion", "夹杂"),
    "q.char.roll_mark": ("roll mark", "辊印"),
    "q.char.oil_stain": ("oil stain", "油斑"),
    "q.lot": ("lot", "批次"),
    "q.no_lots": ("The MES has no lots yet.", "生产执行系统中暂无批次。"),
    "q.lot_unknown": ("The MES has no lot {lot}.", "生产执行系统中没有批次 {lot}。"),
    "q.kind": ("kind", "类型"),
    "q.quantity": ("quantity", "数量"),
    "q.finished": ("finished", "完成时间"),
    "q.made_from": ("made from", "来源批次"),
    "q.trace_back": ("backward trace of {lot}", "{lot} 的反向追溯"),
    "q.origins": ("origins", "源头批次"),
    "q.failed_lots": ("failed lots", "不合格批次"),
    "q.energy_total": ("energy of the lot and its ancestors", "该批次及其上游批次能耗"),
    "q.trace_truncated": (
        "The trace stops at its depth limit: older lots are not shown.",
        "追溯已达层级上限：更早的批次未显示。",
    ),
    "lot.kind.melt": ("melt", "熔次"),
    "lot.kind.cast": ("cast", "铸坯"),
    "lot.kind.coil": ("coil", "卷"),
    "lot.kind.billet": ("billet", "坯锭"),
    "lot.kind.annealed_coil": ("annealed coil", "退火卷"),
    "lot.kind.strip": ("slit strip", "分切带"),
    "lot.kind.housing": ("housing", "壳体"),
    "lot.kind.welded_housing": ("welded housing", "焊接壳体"),
    "lot.kind.gearbox": ("gearbox", "齿轮箱"),
    "lot.kind.part": ("part", "零件"),
    # MES page
    "mes.scope": ("scope", "范围"),
    "mes.site": ("whole site", "全厂"),
    "mes.window": ("window", "时间范围"),
    "mes.shift_pick": ("waterfall of", "瀑布图范围"),
    "mes.whole_window": ("the whole window", "整个时间范围"),
    "mes.window_note": ("{start} – {end}, {n} assets", "{start} – {end}，共 {n} 台设备"),
    "mes.from_to": ("from – to", "起止时间"),
    "mes.hours": ("hours", "小时"),
    "mes.unassigned": ("unassigned", "未分配原因"),
    "mes.cumulative": ("cumulative %", "累计百分比"),
    "mes.stops": ("stops", "停机次数"),
    "mes.no_stops": ("No stops in the window.", "该时间范围内无停机。"),
    "mes.pareto_note": (
        "Time of every stop in the window (cut at its edges), summed by downtime reason.",
        "时间范围内每次停机的时长（超出部分截去），按停机原因汇总。",
    ),
    "mes.unknown_step": (
        "not known: some units have no ideal cycle time",
        "未知：部分产品没有理想节拍",
    ),
    "mes.no_ideal": (
        "Performance and OEE are not known: {n} units were made without an ideal cycle time"
        " (mes.assets ideal_cycle_s, or the product's).",
        "性能开动率和 OEE 无法计算：有 {n} 件产品没有理想节拍（mes.assets 的 ideal_cycle_s 或产品的理想节拍）。",
    ),
    "mes.above_ideal": (
        "Performance is above 100 %: units counted in this window were started before it (a long cycle"
        " that finished after it began), or the ideal cycle time is set slower than the machine runs.",
        "性能开动率超过 100 %：本时段计入的产品有的在时段开始前已开工（长节拍在时段开始后才完成），"
        "或理想节拍设得比设备实际慢。",
    ),
    "mes.no_assets": ("The MES has no assets in this scope.", "该范围内没有生产执行系统管理的设备。"),
    "mes.no_orders": ("No work orders.", "暂无工单。"),
    "mes.total": ("total", "总数"),
    "mes.progress": ("progress", "完成率"),
    "mes.status.planned": ("planned", "已计划"),
    "mes.status.released": ("released", "已下达"),
    "mes.status.running": ("running", "执行中"),
    "mes.status.completed": ("completed", "已完成"),
    "mes.status.cancelled": ("cancelled", "已取消"),
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
