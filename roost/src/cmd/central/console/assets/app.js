// Roost central console: draws each page from the operator API (/v1/...) with the
// session cookie, and redraws on central's events (/ui/events, server-sent events).
// Every element is built with textContent / text nodes, never parsed from HTML strings: names come
// from hosts and must not become markup.
"use strict";

(() => {
  const CSRF = document.querySelector('meta[name="csrf-token"]').content;
  const main = document.getElementById("main");
  const liveEl = document.getElementById("live");
  const PAGE_SIZES = [25, 50, 100];
  const ALARM_ROWS = 500;

  // ---------------------------------------------------------------- helpers
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const k of kids.flat(Infinity)) {
      if (k === null || k === undefined || k === false) continue;
      el.append(k instanceof Node ? k : document.createTextNode(String(k)));
    }
    return el;
  }

  // A read that fails at the network level (the browser saw a network change, a
  // proxy dropped the connection) is retried a few times with backoff; a write is
  // not, since it may have been done: its error is shown instead.
  async function fetchRetrying(path, init) {
    const method = (init.method || "GET").toUpperCase();
    for (let i = 0; ; i++) {
      try {
        return await fetch(path, init);
      } catch (e) {
        if (method !== "GET" || i >= 5) throw e;
        await new Promise((r) => setTimeout(r, 100 * 2 ** i));
      }
    }
  }

  async function api(path, opts = {}) {
    const headers = { Accept: "application/json" };
    if (opts.method && opts.method !== "GET") headers["X-CSRF-Token"] = CSRF;
    if (opts.body) headers["Content-Type"] = "application/json";
    const r = await fetchRetrying(path, { credentials: "same-origin", ...opts, headers });
    if (r.status === 401) {
      location.assign("/login");
      throw new Error("the session ended; log in again");
    }
    const body = await r.json().catch(() => null);
    if (!r.ok) {
      const e = new Error(body && body.error ? body.error : `${path}: HTTP ${r.status}`);
      e.details = (body && body.details) || [];
      throw e;
    }
    return { body, total: Number(r.headers.get("X-Total-Count") || 0) };
  }

  const cls = (s) => String(s).toLowerCase().replace(/[^a-z-]/g, "");
  const badge = (s) => h("span", { class: `badge b-${cls(s)}` }, s);
  const fmtNum = (n) => Number(n || 0).toLocaleString("en-US");
  function when(ms) {
    if (!ms) return "never";
    return new Date(ms).toISOString().replace("T", " ").slice(0, 19) + " UTC";
  }
  function ago(ms) {
    if (!ms) return "never";
    const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    if (s < 60) return `${s} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
    return `${Math.floor(s / 86400)} d ago`;
  }
  const timeCell = (ms) => h("td", { title: when(ms) }, h("time", { datetime: ms ? new Date(ms).toISOString() : null }, ago(ms)));
  function count(n, kind) {
    return h("td", { class: `num ${n ? "n-" + kind : "n-zero"}` }, fmtNum(n));
  }
  const link = (href, text) => h("a", { href }, text);
  const subcloudHref = (n) => `/subclouds/${encodeURIComponent(n)}`;
  const hostHref = (n) => `/hosts/${encodeURIComponent(n)}`;

  function field(id, label, control) {
    control.id = id;
    return h("div", { class: "field" }, h("label", { for: id }, label), control);
  }
  function select(options, value) {
    const s = h("select", {});
    for (const [v, text] of options) s.append(h("option", { value: v, selected: v === value }, text));
    return s;
  }
  function table(id, caption, headers) {
    const head = h("tr", {}, headers.map((x) => (x instanceof Node ? x : h("th", { scope: "col" }, x))));
    const tb = h("tbody");
    const cap = h("caption", {}, caption);
    const t = h("table", { id, "data-state": "loading" }, cap, h("thead", {}, head), tb);
    return { t, tb, cap, head };
  }
  function emptyRow(tb, cols, text) {
    tb.replaceChildren(h("tr", {}, h("td", { colspan: cols, class: "muted" }, text)));
  }
  function showError(where, e) {
    where.replaceChildren(h("p", { class: "error", role: "alert" }, `Could not load: ${e.message}`));
  }
  function debounce(fn, ms) {
    let t = null;
    return (...a) => {
      clearTimeout(t);
      t = setTimeout(() => fn(...a), ms);
    };
  }
  function setQuery(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== "" && v !== null && v !== undefined) q.set(k, v);
    const s = q.toString();
    history.replaceState(null, "", location.pathname + (s ? "?" + s : ""));
  }
  const query = new URLSearchParams(location.search);

  // ---------------------------------------------------------------- live updates
  // One refresh at a time; events arriving meanwhile ask for one more afterwards.
  function liveRefresher(refresh) {
    let running = false;
    let again = false;
    const run = async () => {
      if (running) {
        again = true;
        return;
      }
      running = true;
      try {
        await refresh();
      } finally {
        running = false;
        if (again) {
          again = false;
          setTimeout(run, 100);
        }
      }
    };
    return debounce(run, 150);
  }

  function setLive(on, text) {
    liveEl.className = `live ${on ? "on" : "off"}`;
    liveEl.textContent = text;
  }

  async function startLive(cursor, onEvent) {
    const es = new EventSource(`/ui/events?cursor=${encodeURIComponent(cursor)}`);
    let last = cursor;
    es.onopen = () => setLive(true, `Live · event ${last}`);
    es.onmessage = (m) => {
      let e;
      try {
        e = JSON.parse(m.data);
      } catch (_) {
        return;
      }
      last = e.seq;
      document.body.dataset.lastEvent = String(e.seq);
      setLive(true, `Live · event ${e.seq}`);
      onEvent(e);
    };
    es.onerror = () => setLive(false, "Reconnecting…");
  }

  // ---------------------------------------------------------------- fleet overview
  const SORTS = [
    ["name", "Name", "asc"],
    ["group", "Group", "asc"],
    ["availability", "Availability", "asc"],
    ["management", "Management", "asc"],
    ["sync", "Sync", "desc"],
    ["hosts", "Hosts", "desc"],
    ["critical", "Critical", "desc"],
    ["major", "Major", "desc"],
    ["minor", "Minor", "desc"],
    ["lastSeen", "Last seen", "desc"],
  ];
  const NUMERIC = new Set(["hosts", "critical", "major", "minor"]);

  function statCard(title, big, rows, bigStat) {
    return h(
      "section",
      { class: "card", "aria-label": title },
      h("h2", {}, title),
      big === null ? null : h("div", { class: "big", "data-stat": bigStat }, fmtNum(big)),
      h("dl", {}, rows.map(([label, stat, v]) => [h("dt", {}, label), h("dd", { "data-stat": stat }, fmtNum(v))]))
    );
  }

  function overview() {
    document.title = "Fleet · Roost central";
    const cards = h("div", { class: "cards", id: "stats" });
    const st = {
      q: query.get("q") || "",
      availability: query.get("availability") || "",
      sync: query.get("sync") || "",
      sort: query.get("sort") || "name",
      order: query.get("order") || "asc",
      limit: PAGE_SIZES.includes(Number(query.get("limit"))) ? Number(query.get("limit")) : 50,
      offset: Math.max(0, Number(query.get("offset")) || 0),
    };
    const qIn = h("input", { type: "search", value: st.q, placeholder: "e.g. site-12", autocomplete: "off" });
    const availIn = select(
      [["", "Any"], ["online", "Online"], ["degraded", "Degraded"], ["offline", "Offline"], ["empty", "No hosts"]],
      st.availability
    );
    const syncIn = select([["", "Any"], ["in-sync", "In sync"], ["out-of-sync", "Out of sync"], ["unknown", "Unknown"]], st.sync);
    const sizeIn = select(PAGE_SIZES.map((n) => [String(n), String(n)]), String(st.limit));
    const filters = h(
      "form",
      { class: "filters", role: "search", "aria-label": "Filter subclouds", onsubmit: (e) => e.preventDefault() },
      field("f-q", "Name or group contains", qIn),
      field("f-availability", "Availability", availIn),
      field("f-sync", "Sync status", syncIn),
      field("f-size", "Rows per page", sizeIn)
    );
    const sortHeads = SORTS.map(([key, label]) => {
      const b = h("button", { type: "button", "data-sort": key }, label);
      const th = h("th", { scope: "col", class: NUMERIC.has(key) ? "num" : null }, b);
      b.addEventListener("click", () => {
        if (st.sort === key) st.order = st.order === "asc" ? "desc" : "asc";
        else {
          st.sort = key;
          st.order = SORTS.find((s) => s[0] === key)[2];
        }
        st.offset = 0;
        loadTable();
      });
      return th;
    });
    const { t, tb, cap } = table("subclouds", "Subclouds", sortHeads);
    const prev = h("button", { type: "button", class: "plain", id: "prev" }, "Previous page");
    const next = h("button", { type: "button", class: "plain", id: "next" }, "Next page");
    const pageInfo = h("span", { id: "page-info", "aria-live": "polite" });
    const tableErr = h("div");
    main.replaceChildren(
      h("h1", {}, "Fleet"),
      cards,
      h("h2", { id: "subclouds-title" }, "Subclouds"),
      filters,
      tableErr,
      h("div", { class: "table-wrap" }, t, h("div", { class: "pager" }, prev, next, pageInfo))
    );

    async function loadStats() {
      const [s, strats] = await Promise.all([
        api("/v1/status").then((r) => r.body),
        api("/v1/strategies").then((r) => r.body).catch(() => null),
      ]);
      cards.replaceChildren(
        statCard("Subclouds", s.subclouds, [
          ["Online", "subclouds-online", s.subcloudsOnline],
          ["Degraded", "subclouds-degraded", s.subcloudsDegraded],
          ["Offline", "subclouds-offline", s.subcloudsOffline],
          ["No hosts", "subclouds-empty", s.subcloudsEmpty],
        ], "subclouds"),
        statCard("Sync", null, [
          ["In sync", "in-sync", s.subcloudsInSync],
          ["Out of sync", "out-of-sync", s.subcloudsOutOfSync],
          ["Unknown", "sync-unknown", s.subcloudsUnknown],
          ["Managed", "managed", s.subcloudsManaged],
        ]),
        statCard("Hosts", s.hosts, [
          ["Online", "hosts-online", s.hostsOnline],
          ["Offline", "hosts-offline", s.hostsOffline],
          ["Deployments", "deployments", s.deployments],
        ], "hosts"),
        statCard("Active alarms", null, [
          ["Critical", "alarms-critical", s.alarms.critical],
          ["Major", "alarms-major", s.alarms.major],
          ["Minor", "alarms-minor", s.alarms.minor],
          ["Warning", "alarms-warning", s.alarms.warning],
        ]),
        strats === null
          ? h("section", { class: "card", "aria-label": "Strategies" }, h("h2", {}, "Strategies"), h("p", { class: "muted" }, "Could not load the strategies."))
          : statCard("Strategies", null, [
              ["Running", "strategies-running", strats.filter((x) => RUNNING.has(x.state)).length],
              ["Complete", "strategies-complete", strats.filter((x) => x.state === "complete").length],
              ["Failed or aborted", "strategies-failed", strats.filter((x) => x.state === "failed" || x.state === "aborted").length],
              ["Not applied", "strategies-initial", strats.filter((x) => x.state === "initial").length],
            ])
      );
      cards.dataset.state = "ready";
      return s;
    }

    let seq = 0;
    async function loadTable() {
      const mine = ++seq;
      t.dataset.state = "loading";
      t.setAttribute("aria-busy", "true");
      const params = {
        q: st.q,
        availability: st.availability,
        sync: st.sync,
        sort: st.sort,
        order: st.order,
        offset: st.offset,
        limit: st.limit,
      };
      setQuery({ ...params, sort: st.sort === "name" ? "" : st.sort, order: st.order === "asc" ? "" : st.order, offset: st.offset || "", limit: st.limit === 50 ? "" : st.limit });
      const q = new URLSearchParams();
      for (const [k, v] of Object.entries(params)) if (v !== "") q.set(k, v);
      let r;
      try {
        r = await api(`/v1/subclouds?${q}`);
      } catch (e) {
        if (mine === seq) showError(tableErr, e);
        return;
      }
      if (mine !== seq) return; // a newer query answered or will
      tableErr.replaceChildren();
      const rows = r.body;
      if (rows.length === 0) emptyRow(tb, SORTS.length, r.total ? "No rows on this page." : "No subcloud matches the filter.");
      else
        tb.replaceChildren(
          ...rows.map((s) =>
            h(
              "tr",
              { "data-name": s.name },
              h("th", { scope: "row" }, link(subcloudHref(s.name), s.name)),
              h("td", {}, s.group),
              h("td", {}, badge(s.availability)),
              h("td", {}, badge(s.management)),
              h("td", {}, badge(s.sync)),
              h("td", { class: "num" }, `${fmtNum(s.hostsOnline)} / ${fmtNum(s.hosts)}`),
              count(s.alarms.critical, "critical"),
              count(s.alarms.major, "major"),
              count(s.alarms.minor, "minor"),
              timeCell(s.lastSeenMs)
            )
          )
        );
      for (const th of sortHeads) {
        const key = th.firstChild.dataset.sort;
        if (key === st.sort) th.setAttribute("aria-sort", st.order === "asc" ? "ascending" : "descending");
        else th.removeAttribute("aria-sort");
      }
      const first = r.total ? st.offset + 1 : 0;
      const last = st.offset + rows.length;
      const pages = Math.max(1, Math.ceil(r.total / st.limit));
      const label = SORTS.find((s) => s[0] === st.sort)[1].toLowerCase();
      cap.textContent = `Subclouds ${fmtNum(first)}–${fmtNum(last)} of ${fmtNum(r.total)} matching, sorted by ${label} (${st.order === "asc" ? "ascending" : "descending"})`;
      pageInfo.textContent = `Page ${fmtNum(Math.floor(st.offset / st.limit) + 1)} of ${fmtNum(pages)}`;
      prev.disabled = st.offset === 0;
      next.disabled = last >= r.total;
      t.dataset.sort = `${st.sort}-${st.order}`;
      t.dataset.total = String(r.total);
      t.dataset.state = "ready";
      t.setAttribute("aria-busy", "false");
      if (!window.roostTimings.firstTable) window.roostTimings.firstTable = performance.now();
    }

    const refilter = debounce(() => {
      st.offset = 0;
      loadTable();
    }, 250);
    qIn.addEventListener("input", () => {
      st.q = qIn.value.trim();
      refilter();
    });
    availIn.addEventListener("change", () => {
      st.availability = availIn.value;
      refilter();
    });
    syncIn.addEventListener("change", () => {
      st.sync = syncIn.value;
      refilter();
    });
    sizeIn.addEventListener("change", () => {
      st.limit = Number(sizeIn.value);
      refilter();
    });
    prev.addEventListener("click", () => {
      st.offset = Math.max(0, st.offset - st.limit);
      loadTable();
    });
    next.addEventListener("click", () => {
      st.offset += st.limit;
      loadTable();
    });
    return async () => {
      await Promise.all([loadStats().catch((e) => showError(cards, e)), loadTable()]);
    };
  }

  // ---------------------------------------------------------------- alarms
  function alarmTable(id, caption, withPlace) {
    const heads = ["Severity", "State", "Code"];
    if (withPlace) heads.push("Subcloud", "Host");
    heads.push("About", "Reason", "Raised", "Cleared");
    const x = table(id, caption, heads);
    x.fill = (list, total) => {
      if (list.length === 0) emptyRow(x.tb, heads.length, "No alarms.");
      else
        x.tb.replaceChildren(
          ...list.map((a) =>
            h(
              "tr",
              { "data-code": a.code, "data-id": a.id },
              h("td", {}, badge(a.severity)),
              h("td", {}, badge(a.clearedMs ? "cleared" : "active")),
              h("td", {}, h("code", {}, a.code)),
              withPlace ? h("td", {}, link(subcloudHref(a.subcloud), a.subcloud)) : null,
              withPlace ? h("td", {}, link(hostHref(a.host), a.host)) : null,
              h("td", {}, a.entity),
              h("td", { class: "wrap" }, a.reason),
              h("td", {}, when(a.raisedMs)),
              h("td", {}, a.clearedMs ? when(a.clearedMs) : "—")
            )
          )
        );
      const shown = Math.min(list.length, total);
      x.cap.textContent = total > shown ? `${caption}: the newest ${fmtNum(shown)} of ${fmtNum(total)}; narrow the filter to see the rest` : `${caption}: ${fmtNum(total)}`;
      x.t.dataset.state = "ready";
      x.t.dataset.total = String(total);
    };
    return x;
  }

  function alarms() {
    document.title = "Alarms · Roost central";
    const st = {
      subcloud: query.get("subcloud") || "",
      severity: query.get("severity") || "",
      state: query.get("state") || "active",
    };
    const scIn = h("input", { type: "search", value: st.subcloud, placeholder: "any subcloud", autocomplete: "off" });
    const sevIn = select([["", "Any"], ["critical", "Critical"], ["major", "Major"], ["minor", "Minor"], ["warning", "Warning"]], st.severity);
    const stateIn = select([["active", "Active"], ["cleared", "Cleared"], ["all", "Active and cleared"]], st.state);
    const x = alarmTable("alarms", "Alarms", true);
    const err = h("div");
    main.replaceChildren(
      h("h1", {}, "Alarms"),
      h(
        "form",
        { class: "filters", role: "search", "aria-label": "Filter alarms", onsubmit: (e) => e.preventDefault() },
        field("a-subcloud", "Subcloud (exact name)", scIn),
        field("a-severity", "Severity", sevIn),
        field("a-state", "State", stateIn)
      ),
      err,
      h("div", { class: "table-wrap" }, x.t)
    );
    async function load() {
      setQuery({ subcloud: st.subcloud, severity: st.severity, state: st.state === "active" ? "" : st.state });
      const q = new URLSearchParams();
      if (st.subcloud) q.set("subcloud", st.subcloud);
      if (st.severity) q.set("severity", st.severity);
      if (st.state === "active") q.set("active", "true");
      if (st.state === "cleared") q.set("cleared", "true");
      x.t.dataset.state = "loading";
      try {
        const list = (await api(`/v1/alarms?${q}`)).body;
        err.replaceChildren();
        x.fill(list.slice(0, ALARM_ROWS), list.length);
      } catch (e) {
        showError(err, e);
      }
    }
    const reload = debounce(load, 250);
    scIn.addEventListener("input", () => {
      st.subcloud = scIn.value.trim();
      reload();
    });
    sevIn.addEventListener("change", () => {
      st.severity = sevIn.value;
      reload();
    });
    stateIn.addEventListener("change", () => {
      st.state = stateIn.value;
      reload();
    });
    return load;
  }

  // ---------------------------------------------------------------- subcloud
  function facts(pairs) {
    return h("dl", { class: "facts card" }, pairs.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
  }

  function subcloud(name) {
    document.title = `Subcloud ${name} · Roost central`;
    const head = h("div");
    const numTh = (x) => h("th", { scope: "col", class: "num" }, x);
    const hosts = table("hosts", `Hosts of ${name}`, ["Name", "Availability", "Sync", numTh("Critical"), numTh("Major"), numTh("Minor"), "Last seen", "Roost version", "Address"]);
    const al = alarmTable("subcloud-alarms", "Active alarms", false);
    al.head.insertBefore(h("th", { scope: "col" }, "Host"), al.head.children[3]);
    const err = h("div");
    main.replaceChildren(
      h("p", { class: "crumbs" }, link("/", "Fleet"), " / subcloud"),
      h("h1", {}, `Subcloud ${name}`),
      err,
      head,
      h("h2", {}, "Hosts"),
      h("div", { class: "table-wrap" }, hosts.t),
      h("h2", {}, "Active alarms"),
      h("div", { class: "table-wrap" }, al.t),
      h("p", {}, link(`/alarms?subcloud=${encodeURIComponent(name)}&state=all`, `All alarms of ${name}, cleared ones too`))
    );
    return async () => {
      let s, list;
      try {
        [s, list] = await Promise.all([
          api(`/v1/subclouds/${encodeURIComponent(name)}`).then((r) => r.body),
          api(`/v1/alarms?subcloud=${encodeURIComponent(name)}&active=true`).then((r) => r.body),
        ]);
      } catch (e) {
        showError(err, e);
        return;
      }
      err.replaceChildren();
      head.replaceChildren(
        facts([
          ["Group", s.group],
          ["Management", badge(s.management)],
          ["Availability", badge(s.availability)],
          ["Sync", badge(s.sync)],
          ["Hosts online", `${s.hostsOnline} of ${s.hosts}`],
          ["Active alarms", `${s.alarms.critical} critical, ${s.alarms.major} major, ${s.alarms.minor} minor, ${s.alarms.warning} warning`],
          ["Last seen", `${ago(s.lastSeenMs)} (${when(s.lastSeenMs)})`],
        ])
      );
      const hl = s.hostList || [];
      if (hl.length === 0) emptyRow(hosts.tb, 9, "No hosts have joined this subcloud.");
      else
        hosts.tb.replaceChildren(
          ...hl.map((x) =>
            h(
              "tr",
              { "data-name": x.name },
              h("th", { scope: "row" }, link(hostHref(x.name), x.name)),
              h("td", {}, badge(x.availability)),
              h("td", {}, badge(x.sync.state)),
              count(x.alarms.critical, "critical"),
              count(x.alarms.major, "major"),
              count(x.alarms.minor, "minor"),
              timeCell(x.lastSeenMs),
              h("td", {}, x.roostVersion || "—"),
              h("td", {}, x.address || "—")
            )
          )
        );
      hosts.t.dataset.state = "ready";
      // The subcloud's alarm table has a host column after Code.
      if (list.length === 0) emptyRow(al.tb, 8, "No active alarms.");
      else
        al.tb.replaceChildren(
          ...list.map((a) =>
            h(
              "tr",
              { "data-code": a.code },
              h("td", {}, badge(a.severity)),
              h("td", {}, badge("active")),
              h("td", {}, h("code", {}, a.code)),
              h("td", {}, link(hostHref(a.host), a.host)),
              h("td", {}, a.entity),
              h("td", { class: "wrap" }, a.reason),
              h("td", {}, when(a.raisedMs)),
              h("td", {}, "—")
            )
          )
        );
      al.cap.textContent = `Active alarms: ${list.length}`;
      al.t.dataset.state = "ready";
    };
  }

  // ---------------------------------------------------------------- host
  // The host page (CPU map, workloads, log tail, latency chart) is in host.js.
  function host(name) {
    const ui = { h, api, link, badge, fmtNum, when, ago, facts, table, emptyRow, showError, alarmTable, subcloudHref, setQuery, query, main };
    return window.roostHostPage(ui, name);
  }

  // ---------------------------------------------------------------- strategies
  const RUNNING = new Set(["applying", "paused", "aborting"]);
  function changeText(c) {
    if (c && c.set) return `set ${c.set.set} (generation ${c.set.generation})`;
    if (c && c.release) return `release ${c.release.version}`;
    return "—";
  }
  function targetText(t) {
    if (t && t.group !== undefined) return `group ${t.group}`;
    if (t && t.subclouds) return `subclouds ${t.subclouds.join(", ")}`;
    if (t && t.selector !== undefined) return `selector ${t.selector}`;
    return "—";
  }
  const strategyHref = (n) => `/strategies/${encodeURIComponent(n)}`;
  function done(p) {
    return p.complete + p.failed + p.skipped + p.rolledBack;
  }
  function progressOf(name, p) {
    const text = `${done(p)} of ${p.total} done (${p.complete} complete, ${p.failed} failed, ${p.skipped} skipped, ${p.rolledBack} rolled back, ${p.applying} applying)`;
    return h(
      "span",
      { class: "progress" },
      h("progress", { max: Math.max(1, p.total), value: done(p), "aria-label": `Progress of ${name}` }),
      " ",
      text
    );
  }
  function problems(where, e) {
    where.replaceChildren(
      h(
        "div",
        { class: "error", role: "alert" },
        h("p", {}, e.message),
        e.details && e.details.length ? h("ul", {}, e.details.map((d) => h("li", {}, `${d.field}: ${d.message}`))) : null
      )
    );
  }

  function strategies() {
    document.title = "Strategies · Roost central";
    const list = table("strategies", "Strategies", ["Name", "Change", "Target", "State", "Progress", "Created"]);
    const err = h("div");
    const formErr = h("div", { id: "create-error" });
    const nameIn = h("input", { type: "text", required: true, autocomplete: "off", placeholder: "e.g. roll-web-2" });
    const setIn = h("textarea", { rows: 8, spellcheck: "false", placeholder: "A WorkloadSet as JSON: apiVersion roost.dev/v1, kind WorkloadSet, metadata.name, spec.workloads (as roost apply takes them)" });
    const releaseIn = h("input", { type: "text", autocomplete: "off", placeholder: "or a release, e.g. 0.2.0" });
    const kindIn = select([["group", "Group"], ["subclouds", "Subclouds (comma-separated)"], ["selector", "Label selector"]], "group");
    const targetIn = h("input", { type: "text", required: true, autocomplete: "off", placeholder: "e.g. g1" });
    const typeIn = select([["parallel", "Parallel"], ["serial", "Serial"]], "parallel");
    const maxIn = h("input", { type: "number", min: 1, max: 10000, value: 20 });
    const canaryIn = h("input", { type: "number", min: 0, value: 0 });
    const healthyIn = h("input", { type: "number", min: 0, step: "any", value: 0 });
    const applyIn = h("input", { type: "checkbox", checked: true });
    applyIn.id = "s-apply";
    const form = h(
      "form",
      { class: "card create", id: "create-strategy", "aria-labelledby": "create-title" },
      h("h2", { id: "create-title" }, "Create a strategy"),
      h("div", { class: "filters" }, field("s-name", "Name", nameIn), field("s-kind", "Target kind", kindIn), field("s-target", "Target", targetIn)),
      field("s-set", "Workload set to roll (JSON)", setIn),
      h("div", { class: "filters" },
        field("s-release", "Or a Roost release", releaseIn),
        field("s-type", "Apply type", typeIn),
        field("s-max", "Subclouds at once", maxIn),
        field("s-canary", "Canary subclouds (0 = none)", canaryIn),
        field("s-healthy", "Healthy for (seconds)", healthyIn)),
      h("div", { class: "check" }, applyIn, h("label", { for: "s-apply" }, "Apply it at once")),
      formErr,
      h("button", { type: "submit" }, "Create strategy")
    );
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const req = { name: nameIn.value.trim() };
      if (setIn.value.trim()) {
        try {
          req.set = JSON.parse(setIn.value);
        } catch (e) {
          problems(formErr, { message: `The workload set is not valid JSON: ${e.message}`, details: [] });
          setIn.focus();
          return;
        }
      }
      if (releaseIn.value.trim()) req.release = releaseIn.value.trim();
      const t = targetIn.value.trim();
      if (kindIn.value === "group") req.group = t;
      else if (kindIn.value === "subclouds") req.subclouds = t.split(",").map((x) => x.trim()).filter(Boolean);
      else req.selector = t;
      req.applyType = typeIn.value;
      if (typeIn.value === "parallel") req.maxParallel = Number(maxIn.value);
      if (Number(canaryIn.value)) req.canary = Number(canaryIn.value);
      if (Number(healthyIn.value)) req.minHealthySeconds = Number(healthyIn.value);
      try {
        await api("/v1/strategies", { method: "POST", body: JSON.stringify(req) });
        if (applyIn.checked) await api(`/v1/strategies/${encodeURIComponent(req.name)}/apply`, { method: "POST" });
        location.assign(strategyHref(req.name));
      } catch (e) {
        problems(formErr, e);
      }
    });
    main.replaceChildren(h("h1", {}, "Strategies"), err, h("div", { class: "table-wrap" }, list.t), form);
    return async () => {
      let v;
      try {
        v = (await api("/v1/strategies")).body;
      } catch (e) {
        showError(err, e);
        return;
      }
      err.replaceChildren();
      if (v.length === 0) emptyRow(list.tb, 6, "No strategies yet: create one below.");
      else
        list.tb.replaceChildren(
          ...v.map((x) =>
            h(
              "tr",
              { "data-name": x.name },
              h("th", { scope: "row" }, link(strategyHref(x.name), x.name)),
              h("td", {}, changeText(x.change)),
              h("td", {}, targetText(x.target)),
              h("td", {}, badge(x.state)),
              h("td", {}, progressOf(x.name, x.progress)),
              h("td", {}, when(x.createdMs))
            )
          )
        );
      list.cap.textContent = `Strategies: ${v.length}`;
      list.t.dataset.state = "ready";
    };
  }

  function strategy(name) {
    document.title = `Strategy ${name} · Roost central`;
    const head = h("div");
    const actions = h("div", { class: "actions", role: "group", "aria-label": "Strategy actions" });
    const actErr = h("div");
    const steps = table("steps", `Steps of ${name}`, ["#", "Subcloud", "State", "Started", "Finished", "Details"]);
    main.replaceChildren(
      h("p", { class: "crumbs" }, link("/strategies", "Strategies"), " / strategy"),
      h("h1", {}, `Strategy ${name}`),
      head,
      actions,
      actErr,
      h("h2", {}, "Steps, one per subcloud"),
      h("div", { class: "table-wrap" }, steps.t)
    );
    let refresh;
    const act = (verb) => async () => {
      try {
        if (verb === "remove") {
          await api(`/v1/strategies/${encodeURIComponent(name)}`, { method: "DELETE" });
          location.assign("/strategies");
          return;
        }
        await api(`/v1/strategies/${encodeURIComponent(name)}/${verb}`, { method: "POST" });
        actErr.replaceChildren();
        await refresh();
      } catch (e) {
        problems(actErr, e);
      }
    };
    refresh = async () => {
      let x;
      try {
        x = (await api(`/v1/strategies/${encodeURIComponent(name)}`)).body;
      } catch (e) {
        showError(head, e);
        return;
      }
      const o = x.options;
      head.replaceChildren(
        facts([
          ["State", h("span", { id: "strategy-state" }, badge(x.state))],
          ["Progress", progressOf(name, x.progress)],
          ["Change", changeText(x.change)],
          ["Target", targetText(x.target)],
          ["Apply type", o.applyType === "parallel" ? `parallel, ${o.maxParallel} at once` : "serial"],
          ["Canary", o.canary ? `${o.canary} subcloud(s), then wait for approval${x.approved ? " (approved)" : ""}` : "none"],
          ["Failures tolerated", String(o.maxFailures)],
          ["Offline subclouds", String(o.offline)],
          ["Healthy for", `${o.minHealthyMs / 1000} s`],
          ["Roll back failures", o.rollback ? "yes" : "no"],
          ["Created", when(x.createdMs)],
          ["Finished", x.finishedMs ? when(x.finishedMs) : "—"],
          ["Details", x.details || "—"],
        ])
      );
      const buttons = [];
      if (x.state === "initial") buttons.push(["apply", "Apply"]);
      if (x.state === "paused") buttons.push(["approve", "Approve the canary and continue"]);
      if (x.state === "applying" || x.state === "paused") buttons.push(["abort", "Abort"]);
      if (!RUNNING.has(x.state)) buttons.push(["remove", "Remove"]);
      actions.replaceChildren(...buttons.map(([verb, label]) => h("button", { type: "button", class: verb === "apply" || verb === "approve" ? null : "plain", "data-action": verb, onclick: act(verb) }, label)));
      const st = x.steps || [];
      if (st.length === 0) emptyRow(steps.tb, 6, "No steps: the target matched no subcloud.");
      else
        steps.tb.replaceChildren(
          ...st.map((s) =>
            h(
              "tr",
              { "data-subcloud": s.subcloud, "data-state": s.state },
              h("td", { class: "num" }, String(s.order + 1)),
              h("th", { scope: "row" }, link(subcloudHref(s.subcloud), s.subcloud)),
              h("td", {}, badge(s.state)),
              h("td", {}, s.startedMs ? when(s.startedMs) : "—"),
              h("td", {}, s.finishedMs ? when(s.finishedMs) : "—"),
              h("td", { class: "wrap" }, s.details || "—")
            )
          )
        );
      steps.cap.textContent = `Steps of ${name}: ${st.length}`;
      steps.t.dataset.state = "ready";
      steps.t.dataset.strategyState = x.state;
    };
    return () => refresh();
  }

  // ---------------------------------------------------------------- start
  window.roostTimings = { start: performance.now() };
  const path = location.pathname;
  let refresh;
  let nav = null;
  let m;
  if (path === "/") {
    nav = "overview";
    refresh = overview();
  } else if (path === "/alarms") {
    nav = "alarms";
    refresh = alarms();
  } else if (path === "/strategies") {
    nav = "strategies";
    refresh = strategies();
  } else if ((m = path.match(/^\/strategies\/([^/]+)$/))) {
    nav = "strategies";
    refresh = strategy(decodeURIComponent(m[1]));
  } else if ((m = path.match(/^\/subclouds\/([^/]+)$/))) {
    nav = "overview";
    refresh = subcloud(decodeURIComponent(m[1]));
  } else if ((m = path.match(/^\/hosts\/([^/]+)$/))) {
    nav = "overview";
    refresh = host(decodeURIComponent(m[1]));
  } else {
    main.replaceChildren(h("h1", {}, "No such page"), h("p", {}, link("/", "Back to the fleet")));
    refresh = async () => {};
  }
  for (const a of document.querySelectorAll("[data-nav]")) if (a.dataset.nav === nav) a.setAttribute("aria-current", "page");

  (async () => {
    let cursor = 0;
    try {
      cursor = (await api("/v1/status")).body.lastEvent;
    } catch (e) {
      setLive(false, "Not live");
    }
    const again = liveRefresher(refresh);
    startLive(cursor, () => again());
    await refresh();
    main.setAttribute("aria-busy", "false");
    document.body.dataset.ready = "true";
  })();
})();
