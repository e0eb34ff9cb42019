/* Shopfloor: plotly's own chart words (mode bar, month and day names) in Simplified Chinese.
   Charts on Chinese pages use it through config.locale = "zh-CN" (dashboard/widgets.py). Plotly.js
   registers what is queued in window.PlotlyLocales when it loads, or now if it is loaded already. */
(function () {
  var locale = {
    moduleType: "locale",
    name: "zh-CN",
    dictionary: {
      "Autoscale": "自动缩放",
      "Box Select": "框选",
      "Lasso Select": "套索选择",
      "Compare data on hover": "悬停时比较数据",
      "Show closest data on hover": "悬停时显示最近的数据",
      "Toggle show closest data on hover": "切换悬停时显示最近的数据",
      "Toggle Spike Lines": "切换参考线",
      "Download plot as a png": "下载为 PNG 图片",
      "Download plot": "下载图表",
      "Double-click to zoom back out": "双击还原缩放",
      "Pan": "平移",
      "Reset": "重置",
      "Reset axes": "重置坐标轴",
      "Reset view": "重置视图",
      "Reset views": "重置视图",
      "Zoom": "缩放",
      "Zoom in": "放大",
      "Zoom out": "缩小",
      "Produced with Plotly.js": "由 Plotly.js 生成",
      "Snapshot succeeded": "截图成功",
      "Taking snapshot - this may take a few seconds": "正在截图，可能需要几秒钟",
      "Sorry, there was a problem downloading your snapshot!": "抱歉，下载截图时出错！",
      "Draw line": "画线",
      "Draw rectangle": "画矩形",
      "Draw circle": "画圆",
      "Draw open freeform": "画开放曲线",
      "Draw closed freeform": "画封闭曲线",
      "Erase active shape": "删除选中的图形"
    },
    format: {
      days: ["星期日", "星期一", "星期二", "星期三", "星期四", "星期五", "星期六"],
      shortDays: ["周日", "周一", "周二", "周三", "周四", "周五", "周六"],
      months: ["一月", "二月", "三月", "四月", "五月", "六月", "七月", "八月", "九月", "十月", "十一月", "十二月"],
      shortMonths: ["1月", "2月", "3月", "4月", "5月", "6月", "7月", "8月", "9月", "10月", "11月", "12月"],
      date: "%Y-%m-%d",
      decimal: ".",
      thousands: ","
    }
  };
  if (typeof window.Plotly === "undefined" || typeof window.Plotly.register !== "function") {
    window.PlotlyLocales = window.PlotlyLocales || [];
    window.PlotlyLocales.push(locale);
  } else {
    window.Plotly.register(locale);
  }
})();
