// Goosey LLC - QuestDB View: the live terminal.
// Loads candles, trades, 24h stats and the symbols from /api, then follows /api/stream
// (Server-Sent Events) for the forming candle, new trades, the server's 24h stats and every
// symbol's ticker for the watchlist: the page never polls.
(() => {
  "use strict";

  const LW = window.LightweightCharts;
  const INTERVALS = ["1s", "5s", "15s", "1m", "5m", "15m", "30m", "1h", "4h", "1d"];
  const TAPE_MAX = 80;
  const UP = "#26a69a";
  const DOWN = "#ef5350";

  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const stored = (key, fallback) => { try { return localStorage.getItem(key) ?? fallback; } catch (_) { return fallback; } };
  const store = (key, value) => { try { localStorage.setItem(key, value); } catch (_) { /* private mode */ } };
  const state = {
    symbol: /^[A-Z0-9]{1,20}(-[A-Z0-9]{1,20}){1,4}$/.test(params.get("symbol") || "") ? params.get("symbol") : "BTC-USDT",
    interval: INTERVALS.includes(params.get("interval")) ? params.get("interval") : "1m",
    bars: [],
    lastPrice: null,
    direction: "flat",
    stats: null, // the server's 24h stats (/stats, then the stream's stats events): never summed here
    precision: 2, // price decimals: the instrument's tick size when known
    minMove: 0.01,
    sizePrecision: null, // size decimals from the lot size (null: as the number comes)
    market: new Map(), // symbol -> /symbols entry (metadata, last, 24h change), kept live by `tickers`
    es: null,
    streamRetryMs: 1000,
    loadRetryMs: 1000,
    timer: null,
    generation: 0,
    everLive: false,
    lastEventId: null,
    seen: new Set(),
    newestTradeMs: null,
    pulse: "connecting",
    pulseDetail: null,
    utc: stored("gostream.tz", "utc") !== "local", // times in UTC (default) or the browser's zone
    shown: null, // "symbol|interval" of the bars on the chart: a load of the same view is a resync
  };

  // -- time: UTC or local, for the time scale, the crosshair, the legend and the tape ------
  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  const pad = (n, w = 2) => String(n).padStart(w, "0");
  function timeParts(ms) {
    const d = new Date(ms);
    return state.utc
      ? { y: d.getUTCFullYear(), mo: d.getUTCMonth(), d: d.getUTCDate(), h: d.getUTCHours(), mi: d.getUTCMinutes(), s: d.getUTCSeconds() }
      : { y: d.getFullYear(), mo: d.getMonth(), d: d.getDate(), h: d.getHours(), mi: d.getMinutes(), s: d.getSeconds() };
  }
  const clock = (ms) => { const p = timeParts(ms); return `${pad(p.h)}:${pad(p.mi)}:${pad(p.s)}`; };
  const subMinute = () => ["1s", "5s", "15s"].includes(state.interval);
  function fullTime(sec) { // the crosshair's time label and the legend
    const p = timeParts(sec * 1000);
    const day = `${pad(p.d)} ${MONTHS[p.mo]} ${String(p.y).slice(2)}`;
    if (state.interval === "1d") return day;
    return `${day} ${pad(p.h)}:${pad(p.mi)}${subMinute() ? `:${pad(p.s)}` : ""}`;
  }
  function tickMark(sec, type) { // LW.TickMarkType: Year, Month, DayOfMonth, Time, TimeWithSeconds
    const p = timeParts(sec * 1000);
    switch (type) {
      case 0: return String(p.y);
      case 1: return MONTHS[p.mo];
      case 2: return String(p.d);
      case 3: return `${pad(p.h)}:${pad(p.mi)}`;
      default: return `${pad(p.h)}:${pad(p.mi)}:${pad(p.s)}`;
    }
  }
  const zoneName = () => (state.utc ? "UTC" : "Local");

  // -- chart ----------------------------------------------------------------
  const chart = LW.createChart($("chart"), {
    autoSize: true,
    layout: {
      background: { type: "solid", color: "#0b0e14" },
      textColor: "#8b93a7",
      fontSize: 11,
      panes: { separatorColor: "#1e2533", separatorHoverColor: "#2a3344" },
    },
    grid: { vertLines: { color: "#131925" }, horzLines: { color: "#131925" } },
    crosshair: { mode: LW.CrosshairMode.Normal },
    rightPriceScale: { borderColor: "#1e2533" },
    timeScale: { borderColor: "#1e2533", timeVisible: true, secondsVisible: false, rightOffset: 6 },
  });
  const applyZone = () => chart.applyOptions({
    localization: { timeFormatter: (t) => fullTime(t) },
    timeScale: { tickMarkFormatter: (t, type) => tickMark(t, type) },
  });
  applyZone();
  const candles = chart.addSeries(LW.CandlestickSeries, {
    upColor: UP, downColor: DOWN, borderVisible: false, wickUpColor: UP, wickDownColor: DOWN,
  });
  const volume = chart.addSeries(LW.HistogramSeries, {
    priceFormat: { type: "volume" }, priceLineVisible: false, lastValueVisible: false,
  }, 1);
  const volumePane = chart.panes()[1];
  if (volumePane) volumePane.setHeight(110);

  // -- overlays: moving averages and VWAP, computed here from the bars on the chart ----------
  function sma(bars, n) {
    const out = [];
    let sum = 0;
    for (let i = 0; i < bars.length; i++) {
      sum += bars[i].close;
      if (i >= n) sum -= bars[i - n].close;
      if (i >= n - 1) out.push({ time: bars[i].time, value: sum / n });
    }
    return out;
  }
  function ema(bars, n) { // seeded with the SMA of the first n closes, then k = 2 / (n + 1)
    const out = [];
    if (bars.length < n) return out;
    const k = 2 / (n + 1);
    let value = 0;
    for (let i = 0; i < n; i++) value += bars[i].close / n;
    out.push({ time: bars[n - 1].time, value });
    for (let i = n; i < bars.length; i++) {
      value = bars[i].close * k + value * (1 - k);
      out.push({ time: bars[i].time, value });
    }
    return out;
  }
  function vwap(bars) { // session VWAP: typical price (h + l + c) / 3 weighted by volume, from each UTC day's first loaded bar
    const out = [];
    let day = null, pv = 0, v = 0;
    for (const b of bars) {
      const d = Math.floor(b.time / 86400);
      if (d !== day) { day = d; pv = 0; v = 0; }
      pv += ((b.high + b.low + b.close) / 3) * b.volume;
      v += b.volume;
      if (v > 0) out.push({ time: b.time, value: pv / v });
    }
    return out;
  }
  const OVERLAYS = [
    { key: "sma20", label: "SMA 20", color: "#f0b90b", calc: (bars) => sma(bars, 20) },
    { key: "ema50", label: "EMA 50", color: "#42a5f5", calc: (bars) => ema(bars, 50) },
    { key: "vwap", label: "VWAP", color: "#c77dff", calc: vwap },
  ];
  const overlayOn = new Set(stored("gostream.overlays", "sma20,vwap").split(",").filter((k) => OVERLAYS.some((o) => o.key === k)));
  for (const o of OVERLAYS) {
    o.series = chart.addSeries(LW.LineSeries, {
      color: o.color, lineWidth: 1, priceLineVisible: false, lastValueVisible: false,
      crosshairMarkerVisible: false, visible: overlayOn.has(o.key),
    }, 0);
  }
  let overlayTimer = null;
  function renderOverlays() {
    clearTimeout(overlayTimer);
    overlayTimer = null;
    for (const o of OVERLAYS) {
      o.series.applyOptions({ visible: overlayOn.has(o.key) });
      const data = overlayOn.has(o.key) ? o.calc(state.bars) : [];
      o.series.setData(data);
      o.values = new Map(data.map((p) => [p.time, p.value]));
    }
    renderLegend();
  }
  // Live candles: at most a few recomputations a second, however fast the trades come.
  const scheduleOverlays = () => { if (!overlayTimer) overlayTimer = setTimeout(renderOverlays, 250); };

  const toCandle = (c) => ({ time: c.time, open: c.open, high: c.high, low: c.low, close: c.close });
  const toVolume = (c) => ({ time: c.time, value: c.volume, color: c.close >= c.open ? "rgba(38,166,154,.45)" : "rgba(239,83,80,.45)" });

  // Decimals of a number as JSON wrote it: the fallback for an instrument without metadata.
  function decimals(x) {
    const s = String(x);
    if (/e/i.test(s)) return 8;
    const i = s.indexOf(".");
    return i < 0 ? 0 : s.length - i - 1;
  }
  const precisionOf = (m) => (m && Number.isInteger(m.price_precision) ? Math.min(Math.max(m.price_precision, 0), 12) : null);

  // Price decimals and the price scale's step: from the instrument's tick size (/symbols),
  // else guessed from the prices' own digits.
  function adoptPrecision(prices) {
    const meta = state.market.get(state.symbol);
    let p = precisionOf(meta);
    if (p == null) {
      p = 0;
      for (const x of prices.slice(-300)) p = Math.max(p, decimals(x));
      p = Math.min(Math.max(p, 1), 8);
    }
    const tick = meta ? Number(meta.tick_size) : NaN; // a string, as OKX gives it
    const minMove = tick > 0 ? tick : Math.pow(10, -p);
    const sp = meta && Number.isInteger(meta.size_precision) ? meta.size_precision : null;
    state.sizePrecision = sp;
    if (p !== state.precision || minMove !== state.minMove) {
      state.precision = p;
      state.minMove = minMove;
      const priceFormat = { type: "price", precision: p, minMove };
      candles.applyOptions({ priceFormat });
      for (const o of OVERLAYS) o.series.applyOptions({ priceFormat });
    }
  }

  function showBarCount() {
    $("chart").dataset.bars = String(state.bars.length);
    $("status-bars").textContent = `${state.bars.length} bars · ${state.interval}`;
  }

  // The first index whose bar starts at or after `time`.
  function barIndex(bars, time) {
    let lo = 0, hi = bars.length;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (bars[mid].time < time) lo = mid + 1; else hi = mid; }
    return lo;
  }

  // keep: the user's view stays as it is (zoom and scroll), though bars were added on either
  // side (older pages, a resync): at the right edge it keeps following the newest bar, else
  // the same bars stay in view at the same width.
  function setBars(list, keep) {
    const ts = chart.timeScale();
    const old = state.bars;
    const before = keep && old.length ? ts.getVisibleLogicalRange() : null;
    state.bars = list.slice();
    adoptPrecision(list.flatMap((c) => [c.open, c.close]));
    candles.setData(list.map(toCandle));
    volume.setData(list.map(toVolume));
    ts.applyOptions({ secondsVisible: subMinute() });
    if (before && list.length) {
      let shift;
      if (before.to >= old.length - 1) {
        shift = list.length - old.length; // following the newest bar
      } else {
        const i = Math.min(Math.max(Math.floor(before.to), 0), old.length - 1);
        shift = barIndex(list, old[i].time) - i;
      }
      ts.setVisibleLogicalRange({ from: before.from + shift, to: before.to + shift });
      older.placedFrom = before.from + shift;
    } else if (list.length) {
      // Show the latest ~150 bars (all of them when there are fewer), right edge in view.
      const shown = Math.min(list.length, 150);
      ts.setVisibleLogicalRange({ from: list.length - shown - 0.5, to: list.length + 5 });
      older.placedFrom = list.length - shown - 0.5;
    }
    renderOverlays();
    showBarCount();
  }

  function applyCandle(c) {
    const bars = state.bars;
    const last = bars[bars.length - 1];
    if (!last || c.time > last.time) {
      bars.push(c);
      candles.update(toCandle(c));
      volume.update(toVolume(c));
    } else if (c.time === last.time) {
      bars[bars.length - 1] = c;
      candles.update(toCandle(c));
      volume.update(toVolume(c));
    } else {
      const i = bars.findIndex((b) => b.time === c.time);
      if (i >= 0) {
        bars[i] = c;
        candles.update(toCandle(c), true);
        volume.update(toVolume(c), true);
      } else {
        bars.push(c);
        bars.sort((a, b) => a.time - b.time);
        setBars(bars, true);
      }
    }
    scheduleOverlays();
    if (!legendTime) renderLegend();
    if (bars.length) hideOverlay("empty");
    showBarCount();
    stamp();
  }

  // -- prices, stats, tape --------------------------------------------------
  const fmt = (x, p) => (x == null ? "—" : Number(x).toLocaleString("en-US", { minimumFractionDigits: p, maximumFractionDigits: p }));
  const fmtVol = (x) => (x == null ? "—" : Number(x).toLocaleString("en-US", { maximumFractionDigits: x >= 1000 ? 0 : 4 }));
  const fmtSize = (x) => Number(x).toLocaleString("en-US", state.sizePrecision == null ? { maximumFractionDigits: 8 }
    : { minimumFractionDigits: state.sizePrecision, maximumFractionDigits: state.sizePrecision });
  const fmtPct = (pct) => (pct == null ? "—" : `${pct > 0 ? "+" : ""}${Number(pct).toFixed(2)}%`);
  const trend = (x) => (x > 0 ? "up" : x < 0 ? "down" : "");

  function setLastPrice(price) {
    if (state.lastPrice != null && price !== state.lastPrice) state.direction = price > state.lastPrice ? "up" : "down";
    state.lastPrice = price;
    const el = $("last-price");
    el.textContent = fmt(price, state.precision);
    el.dataset.direction = state.direction;
  }

  function renderStats() {
    const s = state.stats;
    const set = (id, text, cls) => { const el = $(id); el.textContent = text; el.className = cls || ""; };
    if (!s || s.last == null) {
      for (const id of ["stat-change", "stat-high", "stat-low", "stat-volume", "stat-trades"]) set(id, "—");
      $("last-change").textContent = "\u00a0";
      return;
    }
    // As the server computed them over its 24 h window (an older api: from open and last).
    const change = s.change ?? s.last - s.open;
    const pct = s.change_pct ?? (s.open ? (change / s.open) * 100 : null);
    const cls = trend(change);
    set("stat-change", fmtPct(pct), cls);
    set("stat-high", fmt(s.high, state.precision));
    set("stat-low", fmt(s.low, state.precision));
    set("stat-volume", fmtVol(s.volume));
    set("stat-trades", Number(s.trades).toLocaleString("en-US"));
    const ch = $("last-change");
    ch.textContent = `${change > 0 ? "+" : ""}${fmt(change, state.precision)} (${fmtPct(pct)})`;
    ch.className = `change ${cls}`;
  }

  // The 24h stats the server pushed (or /stats answered) for the symbol on screen.
  function applyStats(s) {
    if (!s || s.symbol !== state.symbol) return;
    state.stats = s;
    renderStats();
  }

  function tapeRow(t, fresh) {
    const li = document.createElement("li");
    li.className = `${t.side}${fresh ? " fresh" : ""}`;
    li.dataset.id = String(t.id);
    li.dataset.ms = String(t.time_ms);
    li.dataset.price = String(t.price);
    li.dataset.size = String(t.size);
    li.innerHTML = `<span class="px"></span><span class="sz"></span><span class="t"></span>`;
    li.children[0].textContent = fmt(t.price, state.precision);
    li.children[1].textContent = fmtSize(t.size);
    li.children[2].textContent = clock(t.time_ms);
    return li;
  }

  function setTape(trades) { // newest first
    const tape = $("tape");
    tape.replaceChildren(...trades.slice(0, TAPE_MAX).map((t) => tapeRow(t, false)));
    state.seen = new Set(trades.map((t) => t.id));
    state.newestTradeMs = trades.length ? trades[0].time_ms : null;
    $("tape-empty").hidden = trades.length > 0;
    if (trades.length) { adoptPrecision(trades.map((t) => t.price)); state.lastPrice = null; setLastPrice(trades[0].price); }
  }

  function applyTrades(trades) { // oldest first
    const tape = $("tape");
    for (const t of trades) {
      if (state.seen.has(t.id)) continue;
      state.seen.add(t.id);
      state.newestTradeMs = Math.max(state.newestTradeMs ?? t.time_ms, t.time_ms);
      tape.prepend(tapeRow(t, true));
      setLastPrice(t.price);
    }
    while (tape.children.length > TAPE_MAX) tape.lastElementChild.remove();
    if (state.seen.size > 5000) state.seen = new Set([...tape.children].map((li) => Number(li.dataset.id)));
    $("tape-empty").hidden = tape.children.length > 0;
    stamp();
  }

  function stamp() { $("status-updated").textContent = `updated ${clock(Date.now())} ${zoneName()}`; }

  // -- the legend: the bar under the crosshair, the newest one when the cursor is away ------
  let legendTime = null;
  function renderLegend() {
    const bars = state.bars;
    let i = bars.length - 1;
    if (legendTime != null) {
      const j = barIndex(bars, legendTime);
      if (j < bars.length && bars[j].time === legendTime) i = j;
    }
    const b = bars[i];
    $("legend-title").textContent = `${state.symbol} · ${state.interval}`;
    const legend = $("legend");
    legend.dataset.time = b ? String(b.time) : "";
    if (!b) {
      $("legend-time").textContent = "";
      for (const k of ["open", "high", "low", "close", "volume", "change"]) $(`legend-${k}`).textContent = "—";
      $("legend-overlays").replaceChildren();
      return;
    }
    const base = i > 0 ? bars[i - 1].close : b.open; // change against the previous bar's close
    const change = b.close - base;
    const pct = base ? (change / base) * 100 : 0;
    const dir = change > 0 ? "up" : change < 0 ? "down" : "flat";
    legend.dataset.direction = dir;
    $("legend-time").textContent = fullTime(b.time);
    for (const k of ["open", "high", "low", "close"]) $(`legend-${k}`).textContent = fmt(b[k], state.precision);
    $("legend-volume").textContent = fmtVol(b.volume);
    const sign = change > 0 ? "+" : "";
    $("legend-change").textContent = `${sign}${fmt(change, state.precision)} (${sign}${pct.toFixed(Math.abs(pct) < 0.1 ? 3 : 2)}%)`;
    state.legend = { time: b.time, open: b.open, high: b.high, low: b.low, close: b.close, volume: b.volume, change, changePct: pct };
    $("legend-overlays").replaceChildren(...OVERLAYS.filter((o) => overlayOn.has(o.key)).map((o) => {
      const v = o.values && o.values.get(b.time);
      state.legend[o.key] = v ?? null;
      const span = document.createElement("span");
      span.dataset.overlay = o.key;
      span.style.color = o.color;
      span.textContent = `${o.label} ${v == null ? "—" : fmt(v, state.precision)}`;
      return span;
    }));
  }
  chart.subscribeCrosshairMove((param) => {
    const t = param && param.point && param.time != null ? param.time : null;
    if (t === legendTime) return;
    legendTime = t;
    renderLegend();
  });

  // -- overlay and pulse ----------------------------------------------------
  function showOverlay(kind, title, text) {
    const o = $("overlay");
    o.dataset.kind = kind;
    $("overlay-title").textContent = title;
    $("overlay-text").textContent = text;
    o.hidden = false;
  }
  function hideOverlay(kind) {
    const o = $("overlay");
    if (!kind || o.dataset.kind === kind) o.hidden = true;
  }
  function setPulse(s, detail) {
    state.pulse = s;
    state.pulseDetail = detail || null;
    renderPulse();
  }

  // The stream can be open while the feed behind it has stopped (the producer or the exchange
  // is down): after this long without a trade, counted from the newest trade's exchange time,
  // "live" becomes "feed stale for N s". Liquid pairs trade every second; 20 s of silence is
  // a stopped feed far more often than a quiet market, and short enough to notice.
  const FEED_STALE_S = 20;
  function staleFor() {
    if (state.pulse !== "live" || state.newestTradeMs == null) return null;
    const age = (Date.now() - state.newestTradeMs) / 1000;
    return age >= FEED_STALE_S ? Math.floor(age) : null;
  }
  function ago(s) {
    if (s < 120) return `${s} s`;
    if (s < 7200) return `${Math.floor(s / 60)} min`;
    if (s < 172800) return `${Math.floor(s / 3600)} h`;
    return `${Math.floor(s / 86400)} d`;
  }
  function renderPulse() {
    const s = state.pulse;
    const p = $("pulse");
    p.dataset.state = s;
    const labels = { connecting: "connecting", live: "live", reconnecting: "reconnecting", degraded: "database unavailable", offline: "offline" };
    const stale = staleFor();
    p.dataset.feed = stale == null ? "fresh" : "stale";
    const label = stale == null ? labels[s] || s : `feed stale for ${ago(stale)}`;
    if ($("pulse-label").textContent !== label) $("pulse-label").textContent = label;
    p.title = state.pulseDetail || (stale == null ? `Live stream: ${label}`
      : `The stream is open, but no trade since ${fullTime(Math.floor(state.newestTradeMs / 1000))} ${zoneName()}`);
  }
  setInterval(renderPulse, 1000); // the age counts up every second

  // -- loading --------------------------------------------------------------
  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function getJSON(path) {
    const response = await fetch(`/api${path}`, { headers: { Accept: "application/json" }, cache: "no-store" });
    let body = null;
    try { body = await response.json(); } catch (_) { /* not JSON */ }
    if (!response.ok) throw new ApiError(response.status, (body && body.error) || `HTTP ${response.status}`);
    return body;
  }

  const q = () => `symbol=${encodeURIComponent(state.symbol)}`;

  // -- the watchlist: every symbol with trades, its last price and 24h change ----------------
  // Filled from /symbols (with each instrument's tick and lot size), then kept live by the
  // stream's `tickers` events: the full list when a stream starts, then the entries that
  // changed. One row per symbol, made once and updated in place (hundreds of symbols, many
  // changes a second); a search box filters, the column heads sort, the keyboard drives it.
  const WATCH_SORTS = ["symbol", "last", "change"];
  const watch = {
    rows: new Map(), // symbol -> <li>
    sort: WATCH_SORTS.includes(stored("gostream.watch.sort", "")) ? stored("gostream.watch.sort", "") : "symbol",
    desc: stored("gostream.watch.desc", "false") === "true",
    filter: "",
    cursor: null, // the row the arrow keys are on
    resort: null, // a timer: live changes re-sort a list sorted by price or change once a second
    loaded: null, // the promise of the last /symbols
  };
  const squash = (text) => text.toUpperCase().replace(/[^A-Z0-9]/g, ""); // "btc/usdt" finds BTC-USDT

  // One symbol's entry from /symbols or a ticker, merged into what we know of it.
  function mergeMarket(entry) {
    if (!entry || typeof entry.symbol !== "string") return null;
    const old = state.market.get(entry.symbol);
    const next = { ...old, ...entry };
    if (entry.change_pct === undefined && entry.change_pct_24h !== undefined) next.change_pct = entry.change_pct_24h;
    state.market.set(entry.symbol, next);
    return { old, next };
  }

  function watchRow(symbol) {
    let li = watch.rows.get(symbol);
    if (li) return li;
    li = document.createElement("li");
    li.id = `watch-${symbol}`;
    li.dataset.symbol = symbol;
    li.setAttribute("role", "option");
    li.innerHTML = `<span class="w-sym"><b></b><span></span></span><span class="w-last"></span><span class="w-chg"></span>`;
    const dash = symbol.indexOf("-");
    li.querySelector("b").textContent = dash > 0 ? symbol.slice(0, dash) : symbol;
    li.querySelector(".w-sym span").textContent = dash > 0 ? symbol.slice(dash) : "";
    li.title = symbol;
    watch.rows.set(symbol, li);
    const opt = new Option(symbol, symbol); // the header's picker offers it too
    $("symbol-list").append(opt);
    return li;
  }

  function paintRow(li, m, old) {
    const p = precisionOf(m) ?? Math.min(decimals(m.last), 8);
    li.children[1].textContent = m.last == null ? "—" : fmt(m.last, p);
    const chg = li.children[2];
    chg.textContent = fmtPct(m.change_pct);
    chg.className = `w-chg ${trend(m.change_pct)}`;
    li.setAttribute("aria-selected", String(m.symbol === state.symbol));
    if (old && old.last != null && m.last != null && m.last !== old.last) {
      // A short flash in the direction of the move, as exchanges do.
      li.dataset.tick = m.last > old.last ? "up" : "down";
      li.animate([{ backgroundColor: m.last > old.last ? "rgba(38,166,154,.28)" : "rgba(239,83,80,.28)" },
                  { backgroundColor: "transparent" }], { duration: 700, easing: "ease-out" });
    }
  }

  function compareWatch(a, b) {
    if (watch.sort === "symbol") return (watch.desc ? -1 : 1) * (a.symbol < b.symbol ? -1 : a.symbol > b.symbol ? 1 : 0);
    const key = watch.sort === "last" ? "last" : "change_pct";
    const x = a[key], y = b[key];
    if (x == null || y == null) return x == null ? (y == null ? 0 : 1) : -1; // unknown last, either way
    return (watch.desc ? y - x : x - y) || (a.symbol < b.symbol ? -1 : 1);
  }

  // The rows in order, the filter applied: cheap enough for hundreds of symbols at once a second.
  function renderWatch() {
    clearTimeout(watch.resort);
    watch.resort = null;
    const entries = [...state.market.values()].sort(compareWatch);
    const needle = squash(watch.filter);
    let shown = 0;
    const rows = entries.map((m) => {
      const li = watchRow(m.symbol);
      li.hidden = needle !== "" && !squash(m.symbol).includes(needle);
      if (!li.hidden) shown += 1;
      return li;
    });
    const list = $("watchlist");
    if (rows.length !== list.children.length || rows.some((li, i) => list.children[i] !== li)) list.replaceChildren(...rows);
    const total = state.market.size;
    $("watch-count").textContent = needle ? `${shown} of ${total}` : String(total);
    const empty = $("watch-empty");
    empty.hidden = shown > 0;
    empty.textContent = total === 0 ? "No symbols with trades yet" : `No symbol matches “${watch.filter.trim()}”`;
    if (watch.cursor && (watch.cursor.hidden || !watch.cursor.isConnected)) moveCursor(null);
    for (const b of document.querySelectorAll(".watch-head button")) {
      const on = b.dataset.sort === watch.sort;
      b.setAttribute("aria-pressed", String(on));
      b.dataset.dir = on ? (watch.desc ? "desc" : "asc") : "";
    }
  }

  // Entries from /symbols or the stream: rows painted in place; a new symbol, or a change
  // the list is sorted by, puts the rows in order again (at most once a second when live).
  function applyMarket(entries, live) {
    let reorder = false;
    for (const entry of entries) {
      const merged = mergeMarket(entry);
      if (!merged) continue;
      const { old, next } = merged;
      if (!old) reorder = true;
      else if (watch.sort === "last" ? old.last !== next.last : watch.sort === "change" && old.change_pct !== next.change_pct) reorder = true;
      paintRow(watchRow(next.symbol), next, live ? old : null);
      if (next.symbol === state.symbol && old && precisionOf(old) !== precisionOf(next)) refreshPrecision();
    }
    if (!reorder) return;
    if (!live) renderWatch();
    else if (!watch.resort) watch.resort = setTimeout(renderWatch, 1000);
  }

  // The instrument's metadata arrived (or changed) for the symbol on screen: prices again.
  function refreshPrecision() {
    adoptPrecision(state.bars.flatMap((c) => [c.open, c.close]));
    if (state.lastPrice != null) $("last-price").textContent = fmt(state.lastPrice, state.precision);
    for (const li of $("tape").children) li.children[0].textContent = fmt(Number(li.dataset.price), state.precision);
    for (const li of $("tape").children) li.children[1].textContent = fmtSize(Number(li.dataset.size));
    renderStats();
    renderLegend();
  }

  function markCurrent() {
    for (const li of $("watchlist").querySelectorAll("li[aria-selected='true']")) li.setAttribute("aria-selected", "false");
    const li = watch.rows.get(state.symbol);
    if (li) li.setAttribute("aria-selected", "true");
  }

  // Every symbol with trades (hundreds when following all of OKX): the watchlist, and the
  // header picker's search list (a datalist: the browser filters it without a frame per option).
  function loadSymbols() {
    watch.loaded = getJSON("/symbols").then((list) => {
      applyMarket(Array.isArray(list) ? list : [], false);
      markCurrent();
      return true;
    }, () => false);
    return watch.loaded;
  }

  function moveCursor(li) {
    if (watch.cursor) watch.cursor.classList.remove("cursor");
    watch.cursor = li;
    const box = $("watch-search");
    if (li) {
      li.classList.add("cursor");
      li.scrollIntoView({ block: "nearest" });
      box.setAttribute("aria-activedescendant", li.id);
    } else {
      box.removeAttribute("aria-activedescendant");
    }
  }

  function stepCursor(by) {
    const rows = [...$("watchlist").children].filter((li) => !li.hidden);
    if (!rows.length) return;
    let i = watch.cursor ? rows.indexOf(watch.cursor) : rows.indexOf(watch.rows.get(state.symbol));
    i = i < 0 ? (by > 0 ? 0 : rows.length - 1) : Math.min(Math.max(i + by, 0), rows.length - 1);
    moveCursor(rows[i]);
  }

  function pickSymbol(value) {
    const name = value.trim().toUpperCase();
    const known = state.market.has(name) || name === state.symbol;
    $("symbol").setAttribute("aria-invalid", known || !name ? "false" : "true");
    if (!known || name === state.symbol) return;
    state.symbol = name;
    state.everLive = false;
    if (document.activeElement !== $("symbol")) $("symbol").value = name;
    markCurrent();
    remember();
    load();
  }

  async function load() {
    const gen = ++state.generation;
    clearTimeout(state.timer);
    closeStream();
    state.everLive = false;
    state.lastEventId = null;
    setPulse("connecting");
    $("chart").dataset.loading = "true";
    try {
      const [bars, trades, stats] = await Promise.all([
        getJSON(`/candles?${q()}&interval=${state.interval}`),
        getJSON(`/trades?${q()}&limit=${TAPE_MAX}`),
        getJSON(`/stats?${q()}`),
        // The instrument's precision before anything is drawn (/symbols again if it failed).
        (watch.loaded || loadSymbols()).then((ok) => ok || loadSymbols()),
      ]);
      if (gen !== state.generation) return;
      state.loadRetryMs = 1000;
      delete $("chart").dataset.loading;
      const view = `${state.symbol}|${state.interval}`;
      if (view === state.shown && state.bars.length && bars.length) {
        // A resync of the view on screen: the fresh bars replace ours from their first on, the
        // older pages the user scrolled to stay, and so do the zoom and scroll.
        setBars(state.bars.slice(0, barIndex(state.bars, bars[0].time)).concat(bars), true);
      } else {
        Object.assign(older, { busy: false, done: false, token: null });
        $("history").hidden = true;
        setBars(bars, false);
      }
      state.shown = view;
      setTape(trades);
      state.stats = null;
      applyStats(stats);
      if (bars.length) hideOverlay();
      else showOverlay("empty", `No trades for ${state.symbol} yet`, "The chart fills in as soon as trades arrive.");
      stamp();
      openStream(gen);
    } catch (err) {
      if (gen !== state.generation) return;
      const wait = state.loadRetryMs;
      state.loadRetryMs = Math.min(wait * 2, 15000);
      showOverlay("error", "Market data unavailable", `${err.message}. Retrying in ${Math.round(wait / 1000)} s…`);
      setPulse("offline", err.message);
      state.timer = setTimeout(load, wait);
    }
  }

  // -- older bars as the user scrolls left ------------------------------------------------
  // /candles with `to` just before the oldest bar: HISTORY_PAGE buckets per page, merged and
  // set again (update() cannot insert older bars) with the visible range kept.
  const HISTORY_PAGE = 500;
  // Fewer bars than this left of the view, the user having scrolled further left than the
  // page put it: fetch the next page.
  const HISTORY_MARGIN = 30;
  const HISTORY_PROBES = 3; // empty windows of 5,000 buckets before the start of the data is assumed
  const older = { busy: false, done: false, token: null, placedFrom: Infinity };

  function nearLeftEdge() {
    const r = chart.timeScale().getVisibleLogicalRange();
    return r != null && state.bars.length > 0 && r.from < HISTORY_MARGIN && r.from < older.placedFrom - 0.01;
  }

  async function loadOlder() {
    if (older.busy || older.done || !nearLeftEdge()) return;
    const gen = state.generation;
    const step = STEP_S[state.interval];
    const token = {};
    Object.assign(older, { busy: true, token });
    $("history").hidden = false;
    try {
      let to = state.bars[0].time - 1, limit = HISTORY_PAGE, page = [];
      for (let probe = 0; ; probe++) {
        page = await getJSON(`/candles?${q()}&interval=${state.interval}&to=${to}&limit=${limit}`);
        if (gen !== state.generation) return;
        if (page.length) break;
        to -= limit * step; // a window without trades (the feed was down): look further back
        limit = 5000;
        if (probe >= HISTORY_PROBES || to < 0) { older.done = true; return; }
      }
      const first = state.bars[0].time;
      const add = page.filter((b) => b.time < first);
      if (!add.length) { older.done = true; return; }
      setBars(add.concat(state.bars), true);
    } catch (_) {
      // tried again on the next scroll
    } finally {
      if (older.token === token) { older.busy = false; $("history").hidden = true; }
    }
  }
  chart.timeScale().subscribeVisibleLogicalRangeChange(() => { loadOlder(); });

  // -- the live stream ------------------------------------------------------
  function closeStream() {
    if (state.es) { state.es.close(); state.es = null; }
  }

  function openStream(gen) {
    if (gen !== state.generation) return;
    closeStream();
    setPulse(state.everLive ? "reconnecting" : "connecting");
    // Re-opened by hand (after an error answer, e.g. 503 when the api holds as many streams
    // as it may): resume from the last event id, exactly where the stream left off.
    // Otherwise from the newest bar and trade we have on: a bucket that closed since
    // /candles gets its final values, and the tape the trades that landed since /trades.
    let from;
    if (state.lastEventId) {
      from = `&last_event_id=${encodeURIComponent(state.lastEventId)}`;
    } else {
      const newest = state.bars[state.bars.length - 1];
      from = newest ? `&since=${newest.time}` : "";
      if (state.newestTradeMs != null) from += `&trades_since=${state.newestTradeMs}`;
    }
    // The browser's own reconnects send Last-Event-ID by themselves.
    const es = new EventSource(`/api/stream?${q()}&interval=${state.interval}${from}`);
    state.es = es;
    const mine = () => state.es === es && gen === state.generation;
    const track = (ev) => { if (ev.lastEventId) state.lastEventId = ev.lastEventId; };
    es.addEventListener("hello", () => {
      if (!mine()) return;
      state.streamRetryMs = 1000;
      setPulse("live");
      state.everLive = true;
    });
    es.addEventListener("candle", (ev) => { if (mine()) { track(ev); applyCandle(JSON.parse(ev.data)); } });
    es.addEventListener("trades", (ev) => { if (mine()) { track(ev); applyTrades(JSON.parse(ev.data)); } });
    // Trades written late (a hole filled): their bars come as candle events; they are not
    // the last price.
    es.addEventListener("late", (ev) => { if (mine()) track(ev); });
    es.addEventListener("reload", () => { if (mine()) load(); }); // too far behind, or trades at last
    // The server's 24h window for this symbol, after each batch: shown as it is.
    es.addEventListener("stats", (ev) => { if (mine()) applyStats(JSON.parse(ev.data)); });
    // Every symbol's last price and 24h change: all at the start, then the ones that changed.
    es.addEventListener("tickers", (ev) => {
      if (!mine()) return;
      const body = JSON.parse(ev.data);
      applyMarket(Array.isArray(body.tickers) ? body.tickers : [], true);
    });
    es.addEventListener("status", (ev) => {
      if (!mine()) return;
      const s = JSON.parse(ev.data);
      setPulse(s.ok ? "live" : "degraded", s.error);
    });
    es.onerror = () => {
      if (!mine()) return;
      setPulse("reconnecting");
      if (es.readyState === EventSource.CLOSED) {
        // The server answered with an error (503 when full): the browser will not retry by
        // itself. Back off, with jitter so a full api is not hit by every terminal at once.
        state.es = null;
        const wait = state.streamRetryMs;
        state.streamRetryMs = Math.min(wait * 2, 30000);
        state.timer = setTimeout(() => openStream(gen), wait / 2 + Math.random() * wait);
      }
    };
  }

  // -- completeness of the visible range --------------------------------------
  // /api/completeness for the bars in view: on every change of the visible range (debounced,
  // at most one request at a time) and every 30 s, so a hole that heals turns the badge green.
  const STEP_S = { "1s": 1, "5s": 5, "15s": 15, "1m": 60, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "4h": 14400, "1d": 86400 };
  const COMPLETENESS_DEBOUNCE_MS = 400;
  const COMPLETENESS_MAX_WAIT_MS = 3000; // a range that keeps moving (live 1s bars) is still asked about
  const COMPLETENESS_REFRESH_MS = 30000;
  const comp = { timer: null, pendingSince: null, busy: false, again: false, body: null };
  const count = (n) => Number(n).toLocaleString("en-US");
  const utc = (s) => new Date(s * 1000).toISOString().slice(0, 19).replace("T", " ");

  function visibleRange() {
    const r = chart.timeScale().getVisibleRange();
    if (!r || !state.bars.length) return null;
    // From the first visible bar's start to the end of the last one, [from, to).
    return { from: Math.floor(r.from), to: Math.floor(r.to) + STEP_S[state.interval] };
  }

  function scheduleCompleteness(now) {
    clearTimeout(comp.timer);
    const t = Date.now();
    if (comp.pendingSince == null) comp.pendingSince = t;
    const wait = now ? 0 : Math.max(0, Math.min(COMPLETENESS_DEBOUNCE_MS, comp.pendingSince + COMPLETENESS_MAX_WAIT_MS - t));
    comp.timer = setTimeout(() => { comp.pendingSince = null; refreshCompleteness(); }, wait);
  }

  async function refreshCompleteness() {
    if (comp.busy) { comp.again = true; return; }
    const range = visibleRange();
    if (!range) { renderCompleteness(null); return; }
    const gen = state.generation;
    comp.busy = true;
    try {
      const body = await getJSON(`/completeness?${q()}&from=${range.from}&to=${range.to}`);
      if (gen === state.generation && body.symbol === state.symbol) renderCompleteness(body);
    } catch (err) {
      if (gen === state.generation) renderCompleteness(null, err.message);
    } finally {
      comp.busy = false;
      if (comp.again) { comp.again = false; scheduleCompleteness(true); }
    }
  }

  function renderCompleteness(c, problem) {
    comp.body = c;
    const el = $("completeness");
    if (!c) {
      el.dataset.state = "unknown";
      el.textContent = "—";
      el.title = problem ? `Completeness unknown: ${problem}` : "Completeness: no bars in view";
      return;
    }
    const holes = `${c.holes.length}${c.holes_truncated ? "+" : ""}`;
    let lost = c.holes.reduce((n, h) => n + (h.state === "unrecoverable" ? h.missing : 0), 0);
    if (c.holes_truncated) lost = Math.max(lost, Math.min(c.ledger.unrecoverable_missing, c.missing));
    const healing = c.ledger.open > 0 || c.holes.some((h) => h.state === "open");
    let kind, text;
    if (c.expected === 0) { kind = "unknown"; text = "no trades"; }
    else if (c.complete) { kind = "complete"; text = "100 %"; }
    else if (lost > 0) { kind = "lost"; text = `${count(lost)} lost`; }
    else if (healing) { kind = "healing"; text = `${count(c.missing)} missing, healing`; }
    else { kind = "missing"; text = `${count(c.missing)} missing`; }
    el.dataset.state = kind;
    el.textContent = text;
    const lines = [
      `Trades in view, ${utc(c.from)} to ${utc(c.to)} UTC`,
      c.expected === 0 ? "no trades stored in this range"
        : `${count(c.stored)} of ${count(c.expected)} trade ids stored (${c.percent} %), ids ${c.first_id} to ${c.last_id}`,
    ];
    if (c.missing) {
      lines.push(`${count(c.missing)} missing in ${holes} hole${holes === "1" ? "" : "s"}` + (lost ? `, ${count(lost)} unrecoverable` : ""));
      for (const h of c.holes.slice(0, 5)) {
        lines.push(`  ${h.first_id}..${h.last_id} (${count(h.missing)}): ${h.state}${h.attempts ? `, ${h.attempts} attempts` : ""}`);
      }
    }
    lines.push(`Ledger: ${count(c.ledger.open)} open, ${count(c.ledger.unrecoverable)} unrecoverable` +
               (c.ledger.unrecoverable_missing ? ` (${count(c.ledger.unrecoverable_missing)} ids)` : ""));
    el.title = lines.join("\n");
  }

  chart.timeScale().subscribeVisibleTimeRangeChange(() => scheduleCompleteness(false));
  // Every 30 s while it can change: holes are being healed, or the range reaches the newest
  // bar (new trades land there). A complete range of the past stays complete: not asked again.
  setInterval(() => {
    if (document.hidden) return;
    const c = comp.body;
    const newest = state.bars[state.bars.length - 1];
    if (c && c.complete && newest && c.to <= newest.time) return;
    scheduleCompleteness(true);
  }, COMPLETENESS_REFRESH_MS);

  // -- controls -------------------------------------------------------------
  function remember() {
    const url = new URL(location.href);
    url.searchParams.set("symbol", state.symbol);
    url.searchParams.set("interval", state.interval);
    history.replaceState(null, "", url);
  }

  function selectInterval(name) {
    if (name === state.interval || !INTERVALS.includes(name)) return;
    state.interval = name;
    for (const b of $("intervals").children) b.setAttribute("aria-pressed", String(b.dataset.interval === name));
    remember();
    load();
  }

  function renderIntervals() {
    $("intervals").replaceChildren(...INTERVALS.map((name, i) => {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = name;
      b.dataset.interval = name;
      if (i < 9) b.title = `${name} (key ${i + 1})`;
      b.setAttribute("aria-pressed", String(name === state.interval));
      b.addEventListener("click", () => selectInterval(name));
      return b;
    }));
  }

  // Keys 1..9: the toolbar's intervals in order (not while typing in a field).
  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.isComposing || !/^[1-9]$/.test(ev.key)) return;
    const t = ev.target;
    if (t && (t.isContentEditable || ["INPUT", "SELECT", "TEXTAREA"].includes(t.tagName))) return;
    ev.preventDefault();
    selectInterval(INTERVALS[Number(ev.key) - 1]);
  });

  function renderOverlayToggles() {
    $("overlays").replaceChildren(...OVERLAYS.map((o) => {
      const b = document.createElement("button");
      b.type = "button";
      b.dataset.overlay = o.key;
      b.style.setProperty("--swatch", o.color);
      b.textContent = o.label;
      b.setAttribute("aria-pressed", String(overlayOn.has(o.key)));
      b.addEventListener("click", () => {
        if (overlayOn.has(o.key)) overlayOn.delete(o.key); else overlayOn.add(o.key);
        b.setAttribute("aria-pressed", String(overlayOn.has(o.key)));
        store("gostream.overlays", [...overlayOn].join(","));
        renderOverlays();
      });
      return b;
    }));
  }

  function renderZone() {
    const b = $("tz");
    b.textContent = zoneName();
    b.setAttribute("aria-pressed", String(!state.utc));
    b.title = state.utc ? "Times in UTC: click for local time" : "Times in local time: click for UTC";
    $("tape-tz").textContent = zoneName();
    for (const li of $("tape").children) li.children[2].textContent = clock(Number(li.dataset.ms));
    applyZone();
    renderLegend();
    stamp();
  }
  $("tz").addEventListener("click", () => {
    state.utc = !state.utc;
    store("gostream.tz", state.utc ? "utc" : "local");
    renderZone();
  });

  // A pick from the list fires input with a whole name; typing goes on until Enter or a blur.
  $("symbol").addEventListener("input", (ev) => {
    if (state.market.has(ev.target.value)) pickSymbol(ev.target.value);
  });
  $("symbol").addEventListener("change", (ev) => pickSymbol(ev.target.value));
  $("symbol").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") pickSymbol(ev.target.value);
    if (ev.key === "Escape") { ev.target.value = state.symbol; ev.target.blur(); }
  });
  $("symbol").addEventListener("focus", (ev) => ev.target.select());

  // The watchlist: a click switches; the search box filters, arrows move, Enter switches,
  // Escape clears; "/" anywhere jumps to the search box; the column heads sort.
  $("watchlist").addEventListener("click", (ev) => {
    const li = ev.target.closest("li[data-symbol]");
    if (li) { moveCursor(null); pickSymbol(li.dataset.symbol); }
  });
  $("watch-search").addEventListener("input", (ev) => { watch.filter = ev.target.value; moveCursor(null); renderWatch(); });
  $("watch-search").addEventListener("keydown", (ev) => {
    if (ev.key === "ArrowDown" || ev.key === "ArrowUp") { ev.preventDefault(); stepCursor(ev.key === "ArrowDown" ? 1 : -1); }
    else if (ev.key === "Enter") {
      const li = watch.cursor || [...$("watchlist").children].find((r) => !r.hidden);
      if (li) { moveCursor(null); pickSymbol(li.dataset.symbol); }
    } else if (ev.key === "Escape") {
      if (ev.target.value) { ev.target.value = ""; watch.filter = ""; moveCursor(null); renderWatch(); } else ev.target.blur();
    }
  });
  document.addEventListener("keydown", (ev) => {
    if (ev.key !== "/" || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const t = ev.target;
    if (t && (t.isContentEditable || ["INPUT", "SELECT", "TEXTAREA"].includes(t.tagName))) return;
    ev.preventDefault();
    $("watch-search").focus();
    $("watch-search").select();
  });
  for (const b of document.querySelectorAll(".watch-head button")) {
    b.addEventListener("click", () => {
      // Again on the same column: the other way. Prices and changes start high, names at A.
      if (watch.sort === b.dataset.sort) watch.desc = !watch.desc;
      else { watch.sort = b.dataset.sort; watch.desc = watch.sort !== "symbol"; }
      store("gostream.watch.sort", watch.sort);
      store("gostream.watch.desc", String(watch.desc));
      renderWatch();
    });
  }

  // For tests and the curious: the terminal's state.
  window.terminal = {
    get bars() { return state.bars.slice(); },
    get symbol() { return state.symbol; },
    get interval() { return state.interval; },
    get pulse() { return state.pulse; },
    get loading() { return $("chart").dataset.loading === "true"; },
    get lastPrice() { return state.lastPrice; },
    get completeness() { return comp.body; },
    get legend() { return state.legend ? { ...state.legend } : null; },
    get overlays() { return Object.fromEntries(OVERLAYS.map((o) => [o.key, o.series.data().map((p) => ({ time: p.time, value: p.value }))])); },
    get utc() { return state.utc; },
    get feed() { return { stale: staleFor() != null, staleForS: staleFor(), newestTradeMs: state.newestTradeMs }; },
    get loadingOlder() { return older.busy; },
    get stats() { return state.stats ? { ...state.stats } : null; },
    get precision() { return { price: state.precision, minMove: state.minMove, size: state.sizePrecision }; },
    get market() { return [...state.market.values()].map((m) => ({ ...m })); },
    get watchlist() { // the rows as shown, in order
      return [...$("watchlist").children].filter((li) => !li.hidden).map((li) => ({
        symbol: li.dataset.symbol, last: li.children[1].textContent, change: li.children[2].textContent,
        current: li.getAttribute("aria-selected") === "true",
      }));
    },
    get historyDone() { return older.done; },
    formatTick: (sec, type) => tickMark(sec, type),
    chart,
  };
  window.__terminal = window.terminal;

  renderIntervals();
  renderOverlayToggles();
  renderZone();
  renderWatch();
  remember(); // the URL always names the view, so it can be shared
  $("symbol").value = state.symbol;
  loadSymbols();
  load();
})();
