/* Director live status page: renders the frames of /ws/status/ (see balancer/status_feed.py),
   keeps a requests-per-second history per director and backend for the small charts, and
   reconnects with back-off when the socket closes (e.g. runproxy restarting). Operators get
   enable / disable buttons (POSTs to balancer/status_actions.py) and a link to the removal
   confirmation page. No libraries. */
"use strict";
(function () {
  const body = document.body;
  const INTERVAL_MS = (parseFloat(body.dataset.interval) || 1) * 1000;
  const WINDOW = parseFloat(body.dataset.window) || 300;
  const RETRY_MIN_MS = 250;
  const RETRY_MAX_MS = 4000;
  const STALE_MS = 3.5 * INTERVAL_MS;
  const OPERATOR = body.dataset.operator === "true";
  const COLUMNS = ["name", "role", "state", "load", "capacity", "failures", "rate", "latency", "bytes", "chart",
                   "check"].concat(OPERATOR ? ["actions"] : []);
  const HEADINGS = ["Backend", "Role", "State", "Load cur / max / total", "Capacity", "Failures", "Req/s",
                    "p50 / p95 (1 min)", "Bytes in / out", "Last " + Math.round(WINDOW / 60) + " min",
                    "Last check, last error", "Actions"];

  const directors = document.getElementById("directors");
  const connection = document.getElementById("connection");
  const updated = document.getElementById("updated");
  const notice = document.getElementById("notice");
  const actionMessage = document.getElementById("action-message");
  const history = new Map(); // "d:<id>" or "b:<id>" -> [[time, rate], ...]
  let retryMs = RETRY_MIN_MS;
  let lastFrameAt = 0;

  function setConnection(state, text) {
    body.dataset.connection = state;
    connection.textContent = text;
    connection.className = "connection connection-" + state;
  }

  function showNotice(text, link) {
    notice.textContent = text || "";
    if (link) {
      const a = document.createElement("a");
      a.href = link.href;
      a.textContent = link.text;
      notice.append(" ", a);
    }
    notice.hidden = !text;
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(scheme + "//" + location.host + "/ws/status/");
    socket.onopen = function () {
      retryMs = RETRY_MIN_MS;
      setConnection("live", "live");
    };
    socket.onmessage = function (event) {
      const frame = JSON.parse(event.data);
      if (frame.type === "history") loadHistory(frame);
      else if (frame.type === "status") render(frame);
    };
    socket.onclose = function () {
      setConnection("reconnecting", "reconnecting…");
      checkSession();
      setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
    };
  }

  /* A refused socket looks like any other close: ask the page itself whether we are still
     logged in (a redirect to the login page means no). */
  function checkSession() {
    fetch(location.pathname, {redirect: "manual", cache: "no-store"}).then(function (response) {
      if (response.type === "opaqueredirect") {
        showNotice("Your session has ended.", {href: location.pathname, text: "Log in again"});
      }
    }).catch(function () { /* server down: the reconnect loop goes on */ });
  }

  function watchStaleness() {
    setInterval(function () {
      if (body.dataset.connection === "live" && lastFrameAt && Date.now() - lastFrameAt > STALE_MS) {
        setConnection("stale", "no data for " + Math.round((Date.now() - lastFrameAt) / 1000) + " s");
      }
    }, INTERVAL_MS);
  }

  function loadHistory(frame) {
    history.clear();
    for (const [kind, series] of [["d", frame.directors], ["b", frame.backends]]) {
      for (const id of Object.keys(series)) history.set(kind + ":" + id, series[id]);
    }
  }

  function remember(key, time, rate) {
    if (rate === null || rate === undefined) return;
    let points = history.get(key);
    if (!points) history.set(key, points = []);
    if (points.length && points[points.length - 1][0] >= time) return;
    points.push([time, rate]);
    while (points.length && points[0][0] < time - WINDOW) points.shift();
  }

  function render(frame) {
    lastFrameAt = Date.now();
    if (body.dataset.connection !== "live") setConnection("live", "live");
    updated.textContent = "updated " + clock(frame.time);
    if (frame.error) showNotice(frame.error);
    else if (!frame.live) showNotice("No data plane runs in this process: stored state only, no live figures.");
    else showNotice("");
    const keep = new Set();
    frame.directors.forEach(function (director, index) {
      const section = directorSection(director, index);
      keep.add(section);
      updateDirector(section, director, frame.time);
    });
    for (const section of Array.from(directors.children)) {
      if (!keep.has(section)) section.remove();
    }
    if (!frame.directors.length) directors.textContent = "No directors configured.";
  }

  function directorSection(director, index) {
    let section = directors.querySelector('section[data-director-id="' + director.id + '"]');
    if (!section) {
      section = document.createElement("section");
      section.className = "director";
      section.dataset.directorId = director.id;
      section.innerHTML = '<h2><span class="director-name"></span> <span class="state director-state"></span> ' +
        '<span class="unreached" hidden>no route reaches this director</span></h2>' +
        '<p class="summary"></p><p class="buckets" hidden></p><table><thead><tr></tr></thead><tbody></tbody></table>';
      const head = section.querySelector("thead tr");
      HEADINGS.forEach(function (text, i) {
        const th = document.createElement("th");
        th.className = "col-" + COLUMNS[i];
        th.textContent = text;
        head.append(th);
      });
      section.querySelector("tbody").append(row("total"));
    }
    if (directors.children[index] !== section) directors.insertBefore(section, directors.children[index] || null);
    return section;
  }

  function row(kind) {
    const tr = document.createElement("tr");
    tr.className = kind;
    for (const name of COLUMNS) {
      const td = document.createElement("td");
      td.className = name;
      if (name === "chart") {
        const canvas = document.createElement("canvas");
        canvas.width = 120;
        canvas.height = 28;
        td.append(canvas);
      } else if (name === "state" && kind === "backend") {
        td.innerHTML = '<details class="history"><summary><span class="state-word"></span> ' +
          '<span class="since"></span></summary><ol class="transitions"></ol></details>';
      } else if (name === "check" && kind === "backend") {
        td.innerHTML = '<div class="check-line"></div><div class="error"></div>';
      } else if (name === "actions" && kind === "backend") {
        td.innerHTML = '<button type="button" class="toggle"></button> <a class="remove">Remove…</a>';
        td.querySelector("button.toggle").addEventListener("click", toggleEnabled);
      }
      tr.append(td);
    }
    return tr;
  }

  function set(tr, name, text, title) {
    const td = tr.querySelector("td." + name);
    if (td.textContent !== String(text)) td.textContent = text;
    if (title !== undefined) td.title = title;
    return td;
  }

  function counter(c) { return c.current + " / " + c.max + " / " + c.total; }

  function rateText(rate) {
    if (rate === null || rate === undefined) return "–";
    return rate < 10 ? rate.toFixed(1) : String(Math.round(rate));
  }

  function ago(now, then) {
    if (then === null || then === undefined) return "–";
    const seconds = Math.max(0, Math.round(now - then));
    return seconds < 120 ? seconds + " s ago" : Math.round(seconds / 60) + " min ago";
  }

  function two(n) { return (n < 10 ? "0" : "") + n; }

  /* Local time to the second; the date too when it is not today. */
  function clock(epoch) {
    const d = new Date(epoch * 1000);
    const time = two(d.getHours()) + ":" + two(d.getMinutes()) + ":" + two(d.getSeconds());
    if (d.toDateString() === new Date().toDateString()) return time;
    return d.toLocaleDateString([], {month: "short", day: "numeric"}) + " " + time;
  }

  function span(seconds) {
    seconds = Math.max(0, Math.round(seconds));
    if (seconds < 120) return seconds + " s";
    if (seconds < 7200) return Math.round(seconds / 60) + " min";
    if (seconds < 172800) return Math.round(seconds / 3600) + " h";
    return Math.round(seconds / 86400) + " d";
  }

  /* p50 / p95 of the requests that finished in the last minute (balancer/latency.py). */
  function latencyText(latency) {
    if (!latency) return "–";
    return milliseconds(latency.p50).replace(" ms", "") + " / " + milliseconds(latency.p95);
  }

  function latencyTitle(latency) {
    return latency ? latency.requests + " requests in the last minute" : "no request finished in the last minute";
  }

  function size(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let value = n || 0, unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
    return (unit && value < 10 ? value.toFixed(1) : String(Math.round(value))) + " " + units[unit];
  }

  function bytesText(bytes) {
    return bytes ? size(bytes.received) + " / " + size(bytes.sent) : "–";
  }

  function milliseconds(duration) {
    if (duration === null || duration === undefined) return "";
    const ms = duration * 1000;
    return (ms < 10 ? ms.toFixed(1) : String(Math.round(ms))) + " ms";
  }

  function cacheText(cache) {
    if (!cache || !(cache.objects || cache.hits || cache.misses || cache.shadow)) return "";
    return " · cache " + cache.objects + " objects, " + size(cache.bytes) + ", hits " + cache.hits +
      ", misses " + cache.misses + ", shadow " + cache.shadow;
  }

  function updateDirector(section, director, now) {
    section.dataset.director = director.name;
    section.querySelector(".director-name").textContent = director.name;
    const state = section.querySelector(".director-state");
    state.textContent = director.enabled ? "enabled" : "disabled";
    state.className = "state director-state state-" + (director.enabled ? "online" : "disabled");
    section.querySelector(".summary").textContent = "queue " + counter(director.queued) + " (cur / max / total) · dropped " +
      director.dropped + " · responses 2xx " + director.responses["2xx"] + ", 4xx " + director.responses["4xx"] +
      ", 5xx " + director.responses["5xx"] + cacheText(director.cache);
    const buckets = section.querySelector(".buckets");
    buckets.hidden = !(director.buckets && director.buckets.length);
    buckets.textContent = buckets.hidden ? "" : "buckets (tokens used / assured / ceiling, queued, dropped): " +
      director.buckets.map(function (b) {
        return b.name + " " + b.used + " / " + b.assured + " / " + b.ceiling + ", " + b.queued + ", " + b.dropped;
      }).join(" · ");
    const tbody = section.querySelector("tbody");
    const total = tbody.querySelector("tr.total");
    const online = director.backends.filter(function (b) { return b.state === "online"; }).length;
    const unreached = section.querySelector(".unreached");
    unreached.hidden = !director.unreached;
    unreached.title = director.unreached || "";
    section.dataset.unreached = director.unreached ? "true" : "false";
    set(total, "name", "all backends");
    set(total, "state", online + " / " + director.backends.length + " online");
    set(total, "load", counter(director.load));
    setRate(total, "d:" + director.id, director.rate, now);
    set(total, "latency", latencyText(director.latency), latencyTitle(director.latency));
    set(total, "bytes", bytesText(director.bytes), "request / response body bytes since start");

    const keep = new Set([total]);
    director.backends.forEach(function (backend, index) {
      let tr = tbody.querySelector('tr[data-backend-id="' + backend.id + '"]');
      if (!tr) {
        tr = row("backend");
        tr.dataset.backendId = backend.id;
      }
      if (tbody.children[index] !== tr) tbody.insertBefore(tr, tbody.children[index] || null);
      keep.add(tr);
      updateBackend(tr, director, backend, now);
    });
    for (const tr of Array.from(tbody.children)) {
      if (!keep.has(tr)) tr.remove();
    }
    if (tbody.lastElementChild !== total) tbody.append(total);
  }

  function updateBackend(tr, director, backend, now) {
    tr.dataset.backend = director.name + "/" + backend.name;
    tr.dataset.state = backend.state;
    set(tr, "name", backend.name);
    set(tr, "role", backend.role);
    updateState(tr, backend, now);
    set(tr, "load", counter(backend.load));
    set(tr, "capacity", backend.capacity || "∞");
    set(tr, "failures", backend.failures);
    setRate(tr, "b:" + backend.id, backend.rate, now);
    set(tr, "latency", latencyText(backend.latency), latencyTitle(backend.latency));
    set(tr, "bytes", bytesText(backend.bytes), "request / response body bytes since start");
    updateCheck(tr, backend.last_check, now);
    const error = tr.querySelector("td.check .error");
    text(error, backend.last_error || "");
    error.title = backend.last_error || "";
    if (OPERATOR) updateActions(tr, director, backend);
  }

  /* The state word, "since" (time of the last change) and the last transitions. */
  function updateState(tr, backend, now) {
    const td = tr.querySelector("td.state");
    td.className = "state state-" + backend.state;
    text(td.querySelector(".state-word"), backend.state);
    const since = td.querySelector(".since");
    const changed = backend.health_changed;
    text(since, changed ? "since " + clock(changed) : "");
    since.title = changed ? new Date(changed * 1000).toString() + " (" + span(now - changed) + " ago)" : "";
    const list = td.querySelector("ol.transitions");
    const key = JSON.stringify(backend.transitions);
    if (list.dataset.key === key) return;
    list.dataset.key = key;
    list.textContent = "";
    for (const t of backend.transitions) {
      const li = document.createElement("li");
      li.textContent = clock(t.at) + "  " + t.from + " → " + t.to + (t.reason ? ": " + t.reason : "");
      list.append(li);
    }
    if (!backend.transitions.length) list.innerHTML = "<li>no change recorded yet</li>";
  }

  /* Last check: local time to the second, result, HTTP status, duration. */
  function updateCheck(tr, check, now) {
    const td = tr.querySelector("td.check");
    const line = td.querySelector(".check-line");
    if (check.at === null || check.at === undefined) {
      text(line, "not yet");
      td.dataset.code = "";
      return;
    }
    const result = check.ok === null || check.ok === undefined ? "" : (check.ok ? "✓" : "✗");
    const parts = [clock(check.at), result, check.status === null || check.status === undefined ? "no answer" : check.status,
                   milliseconds(check.duration)].filter(function (p) { return p !== ""; });
    text(line, parts.join(" · "));
    line.title = ago(now, check.at) + (check.ok === false ? ", failed" : "");
    td.dataset.code = check.status === null || check.status === undefined ? "" : String(check.status);
    td.classList.toggle("check-failed", check.ok === false);
  }

  function updateActions(tr, director, backend) {
    const toggle = tr.querySelector("td.actions button.toggle");
    text(toggle, backend.enabled ? "Disable" : "Enable");
    toggle.dataset.action = backend.enabled ? "disable" : "enable";
    toggle.dataset.id = backend.id;
    toggle.hidden = backend.terminating;
    const remove = tr.querySelector("td.actions a.remove");
    remove.href = "/status/backends/" + backend.id + "/remove";
    remove.hidden = !director.mutable || backend.terminating;
  }

  function text(element, value) {
    if (element.textContent !== value) element.textContent = value;
  }

  function toggleEnabled(event) {
    const button = event.currentTarget;
    const token = document.querySelector("#csrf input[name=csrfmiddlewaretoken]").value;
    button.disabled = true;
    fetch("/status/backends/" + button.dataset.id + "/" + button.dataset.action, {
      method: "POST", headers: {"X-CSRFToken": token}, credentials: "same-origin", cache: "no-store",
    }).then(function (response) {
      return response.json().catch(function () { return {detail: "HTTP " + response.status}; }).then(function (answer) {
        showActionMessage(answer.detail, !response.ok);
      });
    }).catch(function (error) {
      showActionMessage("request failed: " + error, true);
    }).finally(function () { button.disabled = false; });
  }

  function showActionMessage(message, failed) {
    actionMessage.textContent = message;
    actionMessage.className = "message " + (failed ? "message-error" : "message-success");
    actionMessage.hidden = false;
  }

  function setRate(tr, key, rate, now) {
    const td = set(tr, "rate", rateText(rate));
    td.dataset.rate = rate === null || rate === undefined ? "" : String(rate);
    remember(key, now, rate);
    drawChart(tr.querySelector("td.chart canvas"), history.get(key) || [], now);
  }

  function drawChart(canvas, points, now) {
    const ctx = canvas.getContext("2d");
    const w = canvas.width;
    const h = canvas.height;
    ctx.clearRect(0, 0, w, h);
    if (!points.length) return;
    let peak = 0;
    for (const p of points) peak = Math.max(peak, p[1]);
    const scale = Math.max(peak, 1);
    const x = function (t) { return w - (now - t) / WINDOW * w; };
    const y = function (r) { return h - 1 - r / scale * (h - 4); };
    ctx.beginPath();
    ctx.moveTo(x(points[0][0]), h);
    for (const p of points) ctx.lineTo(x(p[0]), y(p[1]));
    ctx.lineTo(x(points[points.length - 1][0]), h);
    ctx.closePath();
    ctx.fillStyle = "rgba(38, 110, 180, 0.18)";
    ctx.fill();
    ctx.beginPath();
    points.forEach(function (p, i) { i ? ctx.lineTo(x(p[0]), y(p[1])) : ctx.moveTo(x(p[0]), y(p[1])); });
    ctx.strokeStyle = "#266eb4";
    ctx.lineWidth = 1.5;
    ctx.stroke();
    canvas.title = "peak " + rateText(peak) + " req/s in the last " + Math.round(WINDOW / 60) + " min";
  }

  watchStaleness();
  connect();
})();
