// A visit room's terminal in kiosk mode (docs/visitation.md). It authenticates with its own
// device token (never a person's login), shows its next booked visit, and when the visit's
// session is open joins it: the bureau's room after the family agrees to the visit rules, the
// inmate's room when the escorting officer starts it. During the visit: the countdown, the
// warnings before the end, an officer's warning, and the end — all from the server's records.
// In a lawyer visit (R2) the bureau's room also shows the server's signed statement that no
// recorder and no observer was attached, with a download (a QR code for the lawyer's phone at
// the end).
(function () {
  const $ = (id) => document.getElementById(id);
  const POLL_MS = 3000, WARNING_MS = 20000, STATEMENT_MS = 10000, END_MS = 60000, STATEMENT_END_MS = 300000;
  const KEY = "parley.kiosk";
  const k = window.parleyKiosk = { token: null, data: null, socket: null, call: null, local: null,
    view: null, slots: [], slotMessages: 0, joined: false, warningsSeen: null, timeWarned: null, deadline: null };

  // A visit room speaks Chinese first, whatever the machine's browser language; the button
  // switches to English for the visit and stays so on this terminal.
  if (!localStorage.getItem("parley.lang") && i18n.lang !== "zh") i18n.toggle();
  i18n.apply();
  $("lang").onclick = () => { i18n.toggle(); render(); };
  // Kiosk: nothing to navigate to, no context menu, no text selection by long press.
  document.addEventListener("contextmenu", (e) => e.preventDefault());

  // The admin installs the terminal once with /kiosk#pvt_…; the token stays on this machine and
  // leaves the address bar at once.
  if (location.hash.startsWith("#pvt_")) {
    localStorage.setItem(KEY, decodeURIComponent(location.hash.slice(1)));
    history.replaceState(null, "", location.pathname);
  }
  k.token = localStorage.getItem(KEY);

  function show(name) {
    for (const s of ["setup", "idle", "ready", "call", "end"]) $("k-" + s).hidden = s !== name;
    k.screen = name;
    $("k-statement").hidden = !(k.statement && (name === "call" || name === "end"));
  }
  function text(el, key, vars) {
    let s = i18n.t(key);
    for (const [name, value] of Object.entries(vars || {})) s = s.replace("{" + name + "}", value);
    el.dataset.t = key; el.textContent = s;
  }

  $("k-setup-form").onsubmit = (e) => {
    e.preventDefault();
    k.token = $("k-token").value.trim();
    localStorage.setItem(KEY, k.token);
    poll();
  };

  async function poll() {
    if (k.joined) return;
    if (!k.token) { show("setup"); return; }
    let answer;
    try {
      const r = await fetch("/kiosk/state", { method: "POST", headers: { Authorization: "Bearer " + k.token } });
      answer = await r.json();
    } catch (e) { answer = { ok: false, error: { code: "network" } }; }
    if (!answer.ok) {
      if (answer.error && answer.error.code === "terminal_unauthorized") {
        localStorage.removeItem(KEY); k.token = null;
        show("setup"); text($("k-setup-status"), "k_unauthorized");
        return;
      }
    } else {
      k.data = answer;
      render();
    }
  }

  function render() {
    i18n.apply();
    if (k.statement) renderStatement();
    const d = k.data;
    if (!d) return;
    $("k-terminal").textContent = d.terminal.site + " · " + d.terminal.name;
    if (k.joined) { renderCall(); return; }
    if (k.screen === "end") return;
    const next = d.next;
    if (d.live && d.live.open) {
      show("ready");
      const family = d.terminal.kind === "visitor_room";
      $("k-rules").hidden = !family || d.live.kind === "privileged";
      text($("k-enter"), family ? (d.live.kind === "privileged" ? "k_enter_lawyer" : "k_enter_family") : "k_enter_inmate");
      return;
    }
    show("idle");
    $("k-none").hidden = !!next;
    const box = $("k-next");
    box.textContent = "";
    if (!next) return;
    const line = (key, value) => {
      const p = document.createElement("p");
      const label = document.createElement("span"); label.textContent = i18n.t(key) + " ";
      const strong = document.createElement("strong"); strong.textContent = value;
      p.append(label, strong); box.append(p);
    };
    line("k_time", next.start.replace("T", " ") + " · " + next.minutes + " " + i18n.t("host_minutes"));
    if (d.terminal.kind === "visitor_room") {
      line("k_whom", next.inmate);
      line("k_where", next.other_site);
    } else {
      if (next.visitors.length) line("k_who", next.visitors.join(i18n.t("list_sep")));
      const workers = (next.workers || []).map((w) => w.name + i18n.t("k_worker_of").replace("{org}", w.org));
      if (workers.length) line("k_workers", workers.join(i18n.t("list_sep")));
      line("k_from", next.other_site);
    }
    if (next.kind === "privileged") line("k_kind", i18n.t("k_privileged"));
  }

  $("k-enter").onclick = () => join();

  async function join() {
    const live = k.data && k.data.live;
    if (!live || k.joined) return;
    $("k-enter").disabled = true;
    k.joined = true;
    k.session = live.session; k.kind = live.kind;
    text($("k-ready-status"), "connecting");
    // on this page's server, or on the worker that took the visit over (follow.js)
    window.parleyFollow(
      { token: live.token, device: "kiosk-" + k.data.terminal.id },
      {
        welcome: (msg) => start(msg),
        state: (view) => { k.view = view; renderCall(); },
        slots: (msg) => { k.slotMessages += 1; k.slots = msg.slots || []; attach(); },
        error: (e) => { if (e && e.code === "ended") finish(); },
      },
      (socket) => { k.socket = socket; },
      () => finish(),
    );
  }

  const command = (cmd) => new Promise((resolve) => k.socket.emit("command", { v: 1, cmd }, resolve));

  async function start(welcome) {
    k.view = welcome.session;
    const required = (welcome.consents && welcome.consents.required) || [];
    for (const topic of required) {
      if (!(k.view.you.consents || {})[topic]) await command({ type: "record_consent", topic, given: true });
    }
    if (k.call) { k.call.close(); k.call = null; }
    try {
      if (!k.local) k.local = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 480 } });
    } catch (e) { text($("k-ready-status"), "no_devices"); return; }
    $("k-local").srcObject = k.local;
    const call = k.call = new window.ParleyCall(k.local, welcome.slots, {
      onSlotStream: () => attach(), onState: () => {}, onPathLost: async () => true,
      onCandidate: window.parleyTrickle(() => k.socket, () => k.call === call),
    }, welcome.iceServers);
    // a newer welcome may replace this call while its offer is made or answered: the answer
    // goes only to the call that made the offer
    const sdp = await call.offer();
    if (k.call !== call) { call.close(); return; }
    const messagesBefore = k.slotMessages;
    k.socket.emit("offer", { v: 1, sdp }, async (reply) => {
      if (k.call !== call) return;
      if (!reply || !reply.ok) { text($("k-ready-status"), "err_unknown"); return; }
      // the answer's map only if no "slots" message came since the offer (as app.js does): a
      // message that overtook the answer is as new or newer
      if (k.slotMessages === messagesBefore) k.slots = reply.slots || [];
      await call.answer(reply.sdp);
      attach();
    });
    show("call");
    renderCall();
  }

  // The other end is whoever the first slot with a participant carries (the officer, silent,
  // never publishes and never appears here).
  function attach() {
    if (!k.call) return;
    const info = k.slots.find((s) => s.participant);
    const slot = info && k.call.slots[info.slot];
    const remote = $("k-remote");
    const stream = slot ? slot.stream : null;
    if (remote.srcObject !== stream) remote.srcObject = stream;
  }

  function fmt(seconds) {
    const s = Math.max(0, Math.ceil(seconds));
    return String(Math.floor(s / 60)).padStart(2, "0") + ":" + String(s % 60).padStart(2, "0");
  }

  function renderCall() {
    const v = k.view;
    if (!v || !k.joined) return;
    if (v.session.ended) { finish(v.session.ended_reason); return; }
    if (k.screen !== "call") { show("call"); loadStatement(false); }
    $("k-rec").hidden = !v.session.recording;
    const clock = v.session.clock || {};
    k.deadline = clock.running ? performance.now() + clock.remaining * 1000 : null;
    k.frozen = clock.remaining;
    tickClock();
    const inVisit = v.space === "visit";
    const unchecked = ["visitor", "lawyer"].includes(v.you.role) && !v.you.identity_checked;
    text($("k-status"), !inVisit ? (unchecked ? "k_wait_checkin" : "k_wait_other") : clock.running ? "k_live" : "k_paused");
    const warned = clock.warned || [];
    const lastTime = warned.length ? Math.min(...warned) : null;
    if (lastTime !== null && lastTime !== k.timeWarned) {
      k.timeWarned = lastTime;
      $("k-time-warning").hidden = false;
      text($("k-time-warning"), "k_time_warning", { minutes: Math.round(lastTime / 60) });
    }
    const warnings = v.session.warnings || [];
    if (k.warningsSeen === null) k.warningsSeen = warnings.length;
    if (warnings.length > k.warningsSeen) {
      k.warningsSeen = warnings.length;
      const w = warnings[warnings.length - 1];
      text($("k-warning-reason"), "k_reason_" + w.reason);
      $("k-warning").hidden = false;
      clearTimeout(k.warningTimer);
      k.warningTimer = setTimeout(() => { $("k-warning").hidden = true; }, WARNING_MS);
    }
  }

  function tickClock() {
    const left = k.deadline !== null ? (k.deadline - performance.now()) / 1000 : k.frozen;
    $("k-remaining").textContent = typeof left === "number" ? fmt(left) : "--:--";
  }
  setInterval(tickClock, 250);

  function finish(reason) {
    if (k.screen === "end") return;
    if (k.call) { k.call.close(); k.call = null; }
    if (k.local) { k.local.getTracks().forEach((t) => t.stop()); k.local = null; }
    if (k.socket) k.socket.disconnect();
    show("end");
    $("k-warning").hidden = true;
    const key = "k_end_" + String(reason || "").split(":")[0];
    text($("k-end-reason"), i18n.has(key) ? key : "k_end_other");
    const lawyer = k.kind === "privileged";
    if (lawyer) loadStatement(true);
    // back to the next visit after a minute (five, for the lawyer to take the statement); the
    // page itself never navigates away
    setTimeout(() => {
      k.joined = false; k.view = null; k.warningsSeen = null; k.timeWarned = null;
      k.session = null; k.kind = null; k.statement = null; k.statementAt = null;
      show("idle"); poll();
    }, lawyer ? STATEMENT_END_MS : END_MS);
  }

  // The lawyer's statement (R2, POST /kiosk/statement): as of the ledger's head while the visit
  // runs (every few seconds), once more at the end, which adds the QR code for the phone.
  async function loadStatement(final) {
    if (k.kind !== "privileged" || !k.session || !k.token) return;
    if (!final && k.statementAt && performance.now() - k.statementAt < STATEMENT_MS) return;
    k.statementAt = performance.now();
    let answer;
    try {
      const r = await fetch("/kiosk/statement", {
        method: "POST",
        headers: { Authorization: "Bearer " + k.token, "Content-Type": "application/json" },
        body: JSON.stringify({ session: k.session }),
      });
      answer = await r.json();
    } catch (e) { answer = { ok: false, error: { code: "network" } }; }
    if (!answer.ok) {
      $("k-st-status").textContent = i18n.tf("k_st_error", { code: (answer.error || {}).code || "unknown" });
      return;
    }
    k.statement = answer;
    renderStatement();
  }

  function renderStatement() {
    const a = k.statement;
    $("k-statement").hidden = !a || !(k.screen === "call" || k.screen === "end");
    if (!a) return;
    const s = a.statement.statement;
    $("k-st-zh").textContent = s.assertion.zh;
    $("k-st-en").textContent = s.assertion.en;
    const facts = $("k-st-facts");
    facts.textContent = "";
    const fact = (key, value) => {
      const term = document.createElement("dt"); term.textContent = i18n.t(key);
      const desc = document.createElement("dd"); desc.textContent = value;
      facts.append(term, desc);
    };
    const digest = (p) => (p ? "SHA-256 " + p.sha256 + " (#" + p.seq + ")" : i18n.t("k_st_none"));
    fact("k_st_session", s.session + (s.case_number ? " · " + s.case_number : ""));
    fact("k_st_ledger", "#" + s.ledger.seq + " " + s.ledger.head);
    fact("k_st_start", digest(s.plan_start));
    fact(s.ended ? "k_st_end" : "k_st_now", digest(s.plan_end));
    fact("k_st_issued", s.issued_at);
    fact("k_st_check", "python server.py verify statement-" + s.session + ".json --root " + a.root_sha256);
    const link = $("k-st-download");
    link.href = a.download;
    link.setAttribute("download", "statement-" + s.session + ".json");
    $("k-st-qr").hidden = !s.ended;
    if (s.ended && $("k-st-qr-img").getAttribute("src") !== a.download + "/qr.svg") $("k-st-qr-img").src = a.download + "/qr.svg";
    $("k-st-status").textContent = "";
  }
  setInterval(() => { if (k.joined && k.screen === "call") loadStatement(false); }, STATEMENT_MS);

  poll();
  setInterval(poll, POLL_MS);
})();
