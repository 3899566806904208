// Roost central console: the host page. Its CPU partition (every CPU drawn with its
// role and the workloads it holds), its workloads with their placement and a live log
// tail, its latency probe figures over time as an inline SVG chart, and its alarms.
// Loaded before app.js, which calls window.roostHostPage with its helpers. Every
// element is built from text nodes, never parsed from HTML strings.
"use strict";

(() => {
  const SVG = "http://www.w3.org/2000/svg";
  const LOG_POLL_MS = 1000;
  const LOG_KEEP_LINES = 2000;
  const ROLES = [
    ["platform", "Platform", "the host's own daemons"],
    ["shared", "Shared", "shared pool: workloads float over it"],
    ["dedicated", "Dedicated", "held whole by one workload"],
    ["isolated", "Isolated real-time", "real-time workloads"],
    ["unassigned", "Unassigned", "in no pool of the profile"],
  ];
  const ROLE_NAME = Object.fromEntries(ROLES.map(([r, n]) => [r, n]));

  function svg(tag, attrs, ...kids) {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) el.setAttribute(k, String(v));
    for (const k of kids.flat()) if (k !== null && k !== undefined) el.append(k instanceof Node ? k : document.createTextNode(String(k)));
    return el;
  }

  window.roostHostPage = (ui, name) => {
    const { h, api, link, badge, fmtNum, when, ago, facts, table, emptyRow, showError, alarmTable, subcloudHref, setQuery, query, main } = ui;
    document.title = `Host ${name} · Roost central`;
    const crumbs = h("p", { class: "crumbs" }, link("/", "Fleet"), " / host");
    const head = h("div");
    const numTh = (x) => h("th", { scope: "col", class: "num" }, x);

    // ------------------------------------------------------------ CPU partition
    const cpuInfo = h("p", { class: "muted", id: "cpu-info" });
    const cpuMap = h("ul", { class: "cpu-map", id: "cpu-map", "aria-label": `CPUs of ${name}`, "data-state": "loading" });
    const legend = h(
      "ul",
      { class: "legend", "aria-label": "What the CPU colours mean" },
      ROLES.map(([r, n, what]) => h("li", {}, h("span", { class: `swatch r-${r}`, "aria-hidden": "true" }), h("span", {}, h("strong", {}, n), `: ${what}`)))
    );
    function drawCpus(x) {
      const cpu = x.cpu;
      if (!cpu || !cpu.cores || cpu.cores.length === 0) {
        cpuInfo.replaceChildren(
          h(
            "span",
            { class: "note", id: "cpu-note" },
            x.availability === "online"
              ? "This host has not reported its CPU partition: it runs a Roost older than link protocol 2. Upgrade it to see its cores here."
              : "No CPU partition from this host since central started: it is not online."
          )
        );
        cpuMap.replaceChildren();
        cpuMap.dataset.state = "empty";
        return;
      }
      const byRole = {};
      for (const c of cpu.cores) byRole[c.role] = (byRole[c.role] || 0) + 1;
      cpuInfo.replaceChildren(
        x.availability === "online" ? "" : h("strong", {}, "As last reported before the host went offline: "),
        `${cpu.cores.length} CPUs (`,
        ROLES.filter(([r]) => byRole[r]).map(([r, n]) => `${byRole[r]} ${n.toLowerCase()}`).join(", "),
        `) · profile ${cpu.profile} · `,
        cpu.enforcing ? "enforced in cgroups" : "bookkeeping only (not enforced in cgroups)"
      );
      cpuMap.replaceChildren(
        ...cpu.cores.map((c) => {
          const held = c.workloads.length ? c.workloads.join(", ") : "free";
          return h(
            "li",
            {
              class: `cpu r-${c.role}`,
              "data-cpu": c.cpu,
              "data-role": c.role,
              "data-workloads": c.workloads.join(","),
              title: `CPU ${c.cpu}: ${ROLE_NAME[c.role] || c.role}; ${held}`,
            },
            h("span", { class: "cpu-id" }, `CPU ${c.cpu}`),
            h("span", { class: "cpu-role" }, ROLE_NAME[c.role] || c.role),
            h("span", { class: "cpu-held" }, c.workloads.length ? c.workloads.join(", ") : h("span", { class: "free" }, "free"))
          );
        })
      );
      cpuMap.dataset.state = "ready";
    }

    // ------------------------------------------------------------ workloads
    const wl = table("workloads", `Central's workloads on ${name}`, ["Name", "Set", "Phase", numTh("Restarts"), numTh("Instance"), "Placement", "Spec digest", "Log"]);
    const local = h("p", { class: "muted" });

    // ------------------------------------------------------------ log tail
    const logHead = h("h2", { id: "log-title" }, "Log");
    const logStatus = h("p", { class: "muted", id: "log-status", role: "status" }, "Choose a workload's log above.");
    const logErr = h("div", { id: "log-error" });
    const followBtn = h("button", { type: "button", class: "plain", id: "log-follow", "aria-pressed": "true", disabled: true }, "Pause");
    const logPre = h("pre", { class: "log", id: "log-text", tabindex: "0", "aria-labelledby": "log-title", "data-state": "idle", hidden: true });
    const logBox = h("section", { class: "log-box", "aria-labelledby": "log-title" }, logHead, h("div", { class: "actions" }, followBtn), logStatus, logErr, logPre);
    const log = { name: null, next: null, timer: null, follow: true, gen: 0 };
    function stopLog() {
      clearTimeout(log.timer);
      log.timer = null;
    }
    async function pollLog(gen) {
      if (gen !== log.gen) return;
      const q = log.next === null ? "tail=200" : `offset=${log.next}`;
      try {
        const r = await api(`/v1/hosts/${encodeURIComponent(name)}/workloads/${encodeURIComponent(log.name)}/logs?${q}`);
        if (gen !== log.gen) return;
        const v = r.body;
        logErr.replaceChildren();
        if (log.next === null || v.offset < log.next) logPre.textContent = "";
        if (v.text) {
          const atEnd = logPre.scrollTop + logPre.clientHeight >= logPre.scrollHeight - 4;
          logPre.append(document.createTextNode(v.text));
          // Bounded: keep the newest lines only.
          const lines = logPre.textContent.split("\n");
          if (lines.length > LOG_KEEP_LINES) logPre.textContent = lines.slice(-LOG_KEEP_LINES).join("\n");
          if (atEnd) logPre.scrollTop = logPre.scrollHeight;
        }
        log.next = v.nextOffset;
        logPre.dataset.state = "ready";
        logPre.dataset.size = String(v.size);
        logStatus.textContent = `${log.follow ? "Following" : "Paused"} · ${fmtNum(v.size)} bytes · read ${new Date().toISOString().slice(11, 19)} UTC`;
      } catch (e) {
        if (gen !== log.gen) return;
        if (logPre.dataset.state !== "ready") {
          logPre.dataset.state = "error";
          logPre.hidden = true;
        }
        logStatus.textContent = log.follow ? "Trying again every second…" : "Paused";
        logErr.replaceChildren(h("p", { class: "error", role: "alert" }, `Cannot read the log: ${e.message}`));
      }
      if (log.follow && gen === log.gen) log.timer = setTimeout(() => pollLog(gen), LOG_POLL_MS);
    }
    function openLog(w, focus) {
      stopLog();
      log.gen += 1;
      log.name = w;
      log.next = null;
      log.follow = true;
      logHead.textContent = `Log of ${w}`;
      logPre.textContent = "";
      logPre.hidden = false;
      logPre.dataset.state = "loading";
      logPre.dataset.workload = w;
      logStatus.textContent = "Reading…";
      followBtn.disabled = false;
      followBtn.textContent = "Pause";
      followBtn.setAttribute("aria-pressed", "true");
      followBtn.setAttribute("aria-label", `Pause following the log of ${w}`);
      setQuery({ log: w });
      pollLog(log.gen);
      if (focus) logPre.focus();
    }
    followBtn.addEventListener("click", () => {
      if (!log.name) return;
      log.follow = !log.follow;
      followBtn.textContent = log.follow ? "Pause" : "Follow";
      followBtn.setAttribute("aria-pressed", log.follow ? "true" : "false");
      followBtn.setAttribute("aria-label", `${log.follow ? "Pause following" : "Follow"} the log of ${log.name}`);
      stopLog();
      if (log.follow) pollLog(log.gen);
      else logStatus.textContent = logStatus.textContent.replace(/^Following/, "Paused");
    });

    // ------------------------------------------------------------ latency chart
    const latInfo = h("p", { class: "muted", id: "latency-info" });
    const chartBox = h("div", { class: "chart", id: "latency-chart", "data-state": "loading" });
    const latTable = table("latency-table", "The newest probe runs", ["Ended", numTh("p50 µs"), numTh("p99 µs"), numTh("max µs"), numTh("Missed"), numTh("Samples")]);
    const latDetails = h("details", { class: "figures" }, h("summary", {}, "The figures as a table"), h("div", { class: "table-wrap" }, latTable.t));
    const us = (ns) => ns / 1000;
    const fmtUs = (ns) => (us(ns) >= 100 ? Math.round(us(ns)).toLocaleString("en-US") : us(ns).toFixed(1));
    function drawLatency(x) {
      const pts = x.latency || [];
      if (pts.length === 0) {
        latInfo.textContent =
          x.availability === "online"
            ? "No latency probe figures from this host yet: its probe reports once a run ends (every 10 s by default; `roost host --latency-probe`), or it runs a Roost older than link protocol 2."
            : "No latency probe figures since central started: the host is not online.";
        chartBox.replaceChildren();
        chartBox.dataset.state = "empty";
        emptyRow(latTable.tb, 6, "No figures.");
        latTable.t.dataset.state = "ready";
        return;
      }
      const last = pts[pts.length - 1];
      const worst = Math.max(...pts.map((p) => p.p99Ns));
      latInfo.textContent = `Wake-up latency of a ${last.periodUs} µs timer loop (${last.placement}), ${pts.length} runs since central started; the newest: p50 ${fmtUs(last.p50Ns)} µs, p99 ${fmtUs(last.p99Ns)} µs, ${last.missed} of ${last.samples} deadlines missed.`;
      const W = 900, H = 240, L = 64, R = 16, T = 14, B = 40;
      const t0 = pts[0].timeMs, t1 = Math.max(last.timeMs, t0 + 1);
      const ymax = Math.max(10, niceCeil(us(worst) * 1.1));
      const xs = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
      const ys = (ns) => T + (1 - Math.min(us(ns), ymax) / ymax) * (H - T - B);
      const path = (key) => pts.map((p, i) => `${i ? "L" : "M"}${xs(p.timeMs).toFixed(1)},${ys(p[key]).toFixed(1)}`).join(" ");
      const grid = [];
      for (let i = 0; i <= 4; i++) {
        const v = (ymax * i) / 4;
        const y = T + (1 - i / 4) * (H - T - B);
        grid.push(svg("line", { x1: L, x2: W - R, y1: y, y2: y, class: "grid" }));
        grid.push(svg("text", { x: L - 8, y: y + 4, "text-anchor": "end", class: "axis" }, v === 0 ? "0" : v >= 1000 ? `${(v / 1000).toLocaleString("en-US", { maximumFractionDigits: 1 })} ms` : `${v >= 100 ? Math.round(v) : v.toFixed(1)} µs`));
      }
      const tl = (ms) => new Date(ms).toISOString().slice(11, 19);
      const ticks = [t0, t0 + (t1 - t0) / 2, t1].map((t, i) => svg("text", { x: xs(t), y: H - B + 18, "text-anchor": ["start", "middle", "end"][i], class: "axis" }, `${tl(t)} UTC`));
      const dots = pts.length === 1 ? [svg("circle", { cx: xs(last.timeMs), cy: ys(last.p99Ns), r: 4, class: "p99" }), svg("circle", { cx: xs(last.timeMs), cy: ys(last.p50Ns), r: 4, class: "p50" })] : [];
      const chart = svg(
        "svg",
        { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-labelledby": "latency-svg-title", class: "latency" },
        svg("title", { id: "latency-svg-title" }, `Wake-up latency of ${name} over ${pts.length} probe runs: newest p99 ${fmtUs(last.p99Ns)} µs, highest p99 ${fmtUs(worst)} µs`),
        grid,
        svg("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis-line" }),
        ticks,
        svg("path", { d: path("p99Ns"), class: "p99", fill: "none" }),
        svg("path", { d: path("p50Ns"), class: "p50", fill: "none" }),
        dots
      );
      chartBox.replaceChildren(
        chart,
        h(
          "ul",
          { class: "legend", "aria-label": "Chart lines" },
          h("li", {}, h("span", { class: "swatch l-p99", "aria-hidden": "true" }), h("span", {}, h("strong", {}, "p99"), " wake-up latency per run")),
          h("li", {}, h("span", { class: "swatch l-p50", "aria-hidden": "true" }), h("span", {}, h("strong", {}, "p50"), " (median)"))
        )
      );
      chartBox.dataset.state = "ready";
      chartBox.dataset.points = String(pts.length);
      latTable.tb.replaceChildren(
        ...pts
          .slice(-10)
          .reverse()
          .map((p) =>
            h(
              "tr",
              {},
              h("td", {}, when(p.timeMs)),
              h("td", { class: "num" }, fmtUs(p.p50Ns)),
              h("td", { class: "num" }, fmtUs(p.p99Ns)),
              h("td", { class: "num" }, fmtUs(p.maxNs)),
              h("td", { class: "num" }, fmtNum(p.missed)),
              h("td", { class: "num" }, fmtNum(p.samples))
            )
          )
      );
      latTable.t.dataset.state = "ready";
    }
    function niceCeil(v) {
      const p = 10 ** Math.floor(Math.log10(v));
      for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
      return 10 * p;
    }

    const al = alarmTable("host-alarms", "Active alarms", false);
    const err = h("div");
    main.replaceChildren(
      crumbs,
      h("h1", {}, `Host ${name}`),
      err,
      head,
      h("h2", {}, "CPU partition"),
      cpuInfo,
      cpuMap,
      legend,
      h("h2", {}, "Workloads"),
      h("div", { class: "table-wrap" }, wl.t),
      local,
      logBox,
      h("h2", {}, "Latency probe"),
      latInfo,
      chartBox,
      latDetails,
      h("h2", {}, "Active alarms"),
      h("div", { class: "table-wrap" }, al.t)
    );

    let first = true;
    const refresh = async () => {
      let x, list;
      try {
        [x, list] = await Promise.all([
          api(`/v1/hosts/${encodeURIComponent(name)}`).then((r) => r.body),
          api(`/v1/alarms?host=${encodeURIComponent(name)}&active=true`).then((r) => r.body),
        ]);
      } catch (e) {
        showError(err, e);
        return;
      }
      err.replaceChildren();
      crumbs.replaceChildren(link("/", "Fleet"), " / ", link(subcloudHref(x.subcloud), `subcloud ${x.subcloud}`), " / host");
      const diff = [];
      for (const [k, label] of [["missing", "missing"], ["extra", "extra"], ["differ", "different spec"]])
        if (x.sync[k] && x.sync[k].length) diff.push(`${label}: ${x.sync[k].join(", ")}`);
      head.replaceChildren(
        facts([
          ["Subcloud", link(subcloudHref(x.subcloud), x.subcloud)],
          ["Group", x.group],
          ["Availability", badge(x.availability)],
          ["Sync", h("span", {}, badge(x.sync.state), diff.length ? ` (${diff.join("; ")})` : "")],
          ["Roost version", x.roostVersion || "—"],
          ["Address", x.address || "—"],
          ["Heartbeat", `every ${x.heartbeatMs} ms`],
          ["Last seen", `${ago(x.lastSeenMs)} (${when(x.lastSeenMs)})`],
          ["Enrolled", when(x.enrolledMs)],
          ["Certificate expires", when(x.certNotAfterMs)],
          ["Apply errors", x.applyErrors && x.applyErrors.length ? x.applyErrors.join("; ") : "none"],
          ["Active alarms", `${x.alarms.critical} critical, ${x.alarms.major} major, ${x.alarms.minor} minor, ${x.alarms.warning} warning`],
        ])
      );
      drawCpus(x);
      const ws = x.workloads || [];
      if (ws.length === 0) emptyRow(wl.tb, 8, x.availability === "online" ? "Central runs no workloads here." : "No report from this host since central started.");
      else
        wl.tb.replaceChildren(
          ...ws.map((w) =>
            h(
              "tr",
              { "data-name": w.name },
              h("th", { scope: "row" }, w.name),
              h("td", {}, w.set),
              h("td", {}, badge(w.phase)),
              h("td", { class: "num" }, fmtNum(w.restarts)),
              h("td", { class: "num" }, w.instance ? String(w.instance) : "—"),
              h("td", {}, w.placement ? `${w.placement}${w.cpus ? ` · CPU ${w.cpus}` : ""}` : "best effort"),
              h("td", {}, h("code", { title: w.specDigest }, String(w.specDigest).slice(0, 12))),
              h(
                "td",
                {},
                h(
                  "button",
                  { type: "button", class: "plain", "data-log": w.name, "aria-label": `Show the log of ${w.name}`, "aria-controls": "log-text", onclick: () => openLog(w.name, true) },
                  "Show log"
                )
              )
            )
          )
        );
      wl.cap.textContent = `Central's workloads on ${name}: ${ws.length}`;
      wl.t.dataset.state = "ready";
      local.textContent = x.localWorkloads
        ? `${x.localWorkloads} workload(s) made locally on this host are not shown here (central leaves them alone; the CPU map names them).`
        : "No local workloads on this host.";
      drawLatency(x);
      al.fill(list, list.length);
      if (first) {
        first = false;
        const want = query.get("log");
        if (want && ws.some((w) => w.name === want)) openLog(want, false);
      }
    };
    // Heartbeats carry the probe figures but make no event: redraw now and then too.
    setInterval(() => {
      if (!document.hidden) refresh();
    }, 10000);
    return refresh;
  };
})();
