// The mediator's controls inside the call: who is where, admit, caucus moves and timers,
// mute, identity check, remove, duty lawyer, end. Every button is a rooms command; the server
// checks the permission, the page only offers what a host would use.
(function () {
  const P = window.parley;
  const $ = (id) => document.getElementById(id);
  const t = (k) => i18n.t(k);
  const cmd = (c) => P.command(c);

  function isHost(me) { return me.role === "mediator" || me.role === "co_mediator"; }

  let quality = {};
  P.socket.on("quality", (q) => { quality = q || {}; });

  function signal(pid) {
    const q = quality[pid];
    if (!q || q.state !== "connected") return "○";
    if (q.loss === null || q.loss < 0.02) return "●";  // good
    return q.loss < 0.1 ? "◐" : "◔";  // fair, poor
  }

  // Words, not ids: sides, spaces and rooms as the mediator says them (the ids stay in data-*).
  const tf = (k, vars) => i18n.tf(k, vars);
  function sideName(side) { return side === "A" ? t("host_applicant") : side === "B" ? t("host_respondent") : ""; }
  function roomName(name) {
    if (name === "a" || name === "b") return t("host_room_" + name);
    return `${t("host_room")} ${name}`;
  }
  function spaceName(space) {
    if (!space) return "";
    if (space.startsWith("caucus:")) return roomName(space.slice(7));
    return { joint: t("host_joint"), waiting: t("host_waiting"), left: t("host_left"),
      removed: t("host_removed") }[space] || i18n.space(space);
  }
  function who(p) {
    const side = sideName(p.side);
    if (p.role === "party" && side) return side;
    return side ? `${i18n.role(p.role)} · ${side}` : i18n.role(p.role);
  }
  function danger(b) { b.classList.add("danger"); return b; }

  function personRow(p, view, me) {
    const li = document.createElement("li");
    li.dataset.participant = p.id;
    const label = document.createElement("span");
    const q = quality[p.id];
    label.title = q ? `${q.state}, loss ${q.loss === null ? "?" : Math.round(q.loss * 100) + "%"}` : "";
    const where = p.connected === false ? t("offline") : spaceName(p.space);
    const rc = recordingOffered(view) ? (p.consents || {}).recording : undefined;
    const flags = [p.identity_checked ? "✔ID" : "", p.muted ? "🔇 " + t("host_muted") : "",
      p.asked_at ? "✋ " + t("host_asking") : "",
      rc === true ? "⏺ " + t("host_rec_yes") : rc === false ? "⏺✗ " + t("host_rec_no") : ""].filter(Boolean).join(" ");
    label.textContent = `${signal(p.id)} ${p.name} · ${who(p)} · ${where} ${flags}`;
    if (p.identity_checked) label.title = (label.title ? label.title + " · " : "") + t("host_id_ok");
    li.appendChild(label);
    const box = document.createElement("span");
    box.className = "actions";
    const live = p.connected !== false && p.space !== "left" && p.space !== "removed";
    const b = (key, action, c) => box.appendChild(P.button(t(key), action, () => cmd(c)));
    if (live && p.space === "waiting") b("admit", "admit", { type: "admit", participant: p.id });
    if (live && p.space !== "waiting") b("host_to_waiting", "to-waiting", { type: "return_to_waiting", participant: p.id });
    for (const c of view.caucuses || []) {
      if (live && p.space !== "caucus:" + c.name) {
        box.appendChild(P.button(`${t("host_move_to")} ${roomName(c.name)}`, "to-caucus",
          () => cmd({ type: "move_to_caucus", caucus: c.name, participants: [p.id] })));
      }
    }
    if (live) b(p.muted ? "unmute" : "mute", p.muted ? "unmute" : "mute",
      { type: p.muted ? "unmute" : "mute", participant: p.id });
    if (!p.identity_checked && p.space !== "left") b("host_check_id", "identity",
      { type: "mark_identity_checked", participant: p.id, method: "video" });
    if (!p.identity_checked && p.role === "party" && live) {
      box.appendChild(P.button(t("send_code"), "send-code", async () => {
        const email = prompt(t("otp_email_prompt") + " " + p.name);
        if (!email) return;
        const r = await P.socket.timeout(20000).emitWithAck("otp",
          { v: 1, action: "send", participant: p.id, email: email.trim() }).catch(() => null);
        $("call-status").textContent = r && r.ok ? t("code_sent") : i18n.error(r ? r.error.code : "timeout");
      }));
    }
    if (p.space !== "left" && p.space !== "removed") {
      box.appendChild(danger(P.button(t("remove"), "remove", () => {
        if (confirm(tf("host_confirm_remove", { name: p.name }))) cmd({ type: "remove", participant: p.id });
      })));
    }
    li.appendChild(box);
    return li;
  }

  // Puts the fresh rows (each <li> keyed by data-<key>) into the list, keeping every part of a
  // row whose markup did not change. The panel renders every second and on every state update;
  // rebuilt each time, a tap landing during a render was lost (its press and its release hit
  // two different buttons), so "Admit" sometimes did nothing. A kept button keeps its handler,
  // whose command reads only what the row shows (the id in data-participant, the name, the state).
  function syncRows(ul, rows, key) {
    const wanted = new Set(rows.map((li) => li.dataset[key]));
    for (const li of [...ul.children]) if (!wanted.has(li.dataset[key])) li.remove();
    const have = new Map([...ul.children].map((li) => [li.dataset[key], li]));
    rows.forEach((fresh, i) => {
      const li = have.get(fresh.dataset[key]);
      if (li) keepUnchanged(li, fresh);
      const node = li || fresh;
      if (ul.children[i] !== node) ul.insertBefore(node, ul.children[i] || null);
    });
  }

  function keepUnchanged(li, fresh) {
    if (li.outerHTML === fresh.outerHTML) return;
    const parts = [...fresh.children];
    if (li.children.length !== parts.length) { li.replaceChildren(...parts); return; }
    parts.forEach((part, i) => {
      const old = li.children[i];
      if (old.outerHTML === part.outerHTML) return;
      if (old.children.length && old.children.length === part.children.length) {
        keepUnchanged(old, part);  // the actions: keep the buttons that did not change
        for (const a of part.getAttributeNames()) old.setAttribute(a, part.getAttribute(a));
      } else old.replaceWith(part);
    });
  }

  function caucusRow(c, me) {
    const li = document.createElement("li");
    li.dataset.caucus = c.name;
    const left = c.deadline ? Math.max(0, Math.round(c.deadline - Date.now() / 1000)) : null;
    const label = document.createElement("span");
    label.textContent = roomName(c.name) + (left !== null ? ` · ${fmt(left)}` : "");
    li.appendChild(label);
    const box = document.createElement("span");
    box.className = "actions";
    if (me.space !== "caucus:" + c.name) {
      box.appendChild(P.button(t("host_visit"), "visit", () => cmd({ type: "visit_caucus", caucus: c.name })));
    }
    for (const side of ["A", "B"]) {
      box.appendChild(P.button(t("host_move_side_" + side.toLowerCase()), "move-side-" + side,
        () => cmd({ type: "move_to_caucus", caucus: c.name, side })));
    }
    box.appendChild(P.button(t("host_extend"), "extend", () => cmd({ type: "extend_caucus_timer", caucus: c.name, seconds: 300 })));
    box.appendChild(P.button(t("host_close_room"), "close-caucus", () => cmd({ type: "close_caucus", caucus: c.name })));
    li.appendChild(box);
    return li;
  }

  // The duty lawyer's room: chosen from the rooms that exist, by name (was a text field: "joint").
  const lawyerSpace = document.createElement("select");
  lawyerSpace.id = "lawyer-space";
  lawyerSpace.setAttribute("aria-label", "room");
  $("lawyer-space").replaceWith(lawyerSpace);
  function renderLawyerSpaces(view) {
    const want = [["joint", t("host_joint")]].concat(
      (view.caucuses || []).map((c) => ["caucus:" + c.name, roomName(c.name)]));
    const now = [...lawyerSpace.options].map((o) => o.value + "\n" + o.textContent).join("|");
    if (now === want.map(([v, l]) => v + "\n" + l).join("|")) return;
    const chosen = lawyerSpace.value;
    lawyerSpace.textContent = "";
    for (const [value, label] of want) lawyerSpace.appendChild(new Option(label, value));
    if (want.some(([v]) => v === chosen)) lawyerSpace.value = chosen;
  }

  // Someone arrives in the waiting room: a two-note chime and a badge that counts who waits.
  const badge = document.createElement("button");
  badge.id = "waiting-badge"; badge.type = "button"; badge.className = "waiting-badge"; badge.hidden = true;
  badge.setAttribute("aria-live", "polite");
  document.body.appendChild(badge);
  badge.onclick = () => {
    const first = $("people").querySelector("button[data-action='admit']");
    (first ? first.closest("li") : $("people")).scrollIntoView({ block: "center" });
  };
  let seenWaiting = new Set();
  let audio = null;
  async function chime() {
    try {
      audio = audio || new AudioContext();
      // a new context may start suspended: notes scheduled now would play late or not at all
      if (audio.state !== "running") await audio.resume();
      const t0 = audio.currentTime + 0.02;
      [[880, 0], [660, 0.22]].forEach(([freq, at]) => {
        const osc = audio.createOscillator(), gain = audio.createGain();
        osc.type = "sine"; osc.frequency.value = freq;
        gain.gain.setValueAtTime(0.0001, t0 + at);
        gain.gain.exponentialRampToValueAtTime(0.3, t0 + at + 0.02);
        gain.gain.exponentialRampToValueAtTime(0.0001, t0 + at + 0.2);
        osc.connect(gain).connect(audio.destination);
        osc.start(t0 + at); osc.stop(t0 + at + 0.22);
      });
    } catch (e) { /* no audio on this device: the badge still shows */ }
  }
  function renderWaiting() {
    const waiting = P.people().filter((p) => p.id !== P.me && p.space === "waiting" && p.connected !== false);
    const ids = new Set(waiting.map((p) => p.id));
    const arrived = P.joined && waiting.some((p) => !seenWaiting.has(p.id));
    seenWaiting = ids;
    badge.hidden = !waiting.length || !P.joined || $("screen-call").hidden;
    badge.dataset.count = String(waiting.length);
    badge.textContent = "🔔 " + tf("host_waiting_badge", { n: waiting.length });
    if (arrived) { chime(); badge.classList.remove("new"); void badge.offsetWidth; badge.classList.add("new"); }
  }

  // Styles of the host panel's additions (host.css; the page's own style.css is the party's).
  const css = document.createElement("link");
  css.rel = "stylesheet"; css.href = "/static/host.css";
  document.head.appendChild(css);

  function fmt(s) { return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`; }
  window.parleyFormatSeconds = fmt;

  function render() {
    const me = P.myself();
    const view = P.view || {};
    const host = isHost(me);
    $("host-panel").hidden = !host;
    if (!host) { badge.hidden = true; return; }
    renderWaiting();
    renderLawyerSpaces(view);
    $("caucus-name").placeholder = t("host_room_code");
    question.placeholder = t("ring_question");
    question.setAttribute("aria-label", t("ring_question"));
    $("caucus-minutes").title = t("host_minutes");
    $("caucus-minutes").setAttribute("aria-label", t("host_minutes"));
    const others = P.people().filter((p) => p.id !== P.me);
    syncRows($("people"), others.map((p) => personRow(p, view, me)), "participant");
    syncRows($("caucuses"), (view.caucuses || []).map((c) => caucusRow(c, me)), "caucus");
    $("btn-return-joint").hidden = !(me.space || "").startsWith("caucus:");
    renderRecording(view, me);
  }

  // -- recording (R8): the mediator's own consent, then everyone present is asked; it starts by
  // itself once nobody in the joint room is missing. The question lives on the server
  // (socket.io "recording", signaling/namespace.py) so a reload keeps it.
  P.recordingAsk = null;
  P.socket.on("welcome", (msg) => { P.recordingAsk = msg.recording_ask || null; P.render(); });
  P.socket.on("recording_ask", (msg) => { P.recordingAsk = (msg && msg.ask) || null; P.render(); });
  function recordingOffered(view) {
    // a recorder runs on this server (welcome.recording) and this session asks consent for it
    return !!(P.recordingAvailable && view.session && view.session.recording_rule === "consent_gated");
  }
  const recPanel = document.createElement("div");
  recPanel.id = "rec-panel"; recPanel.className = "rec-panel"; recPanel.setAttribute("role", "status");
  recPanel.hidden = true;
  const recSelf = document.createElement("div");
  recSelf.id = "rec-self"; recSelf.hidden = true;
  const recSelfText = document.createElement("p");
  recSelf.append(recSelfText,
    P.button(t("rec_yes"), "rec-self-yes", () => selfAnswer(true)),
    P.button(t("rec_no"), "rec-self-no", () => selfAnswer(false)));
  const recStatus = document.createElement("p");
  recStatus.id = "rec-status";
  const recCancel = P.button(t("rec_cancel_ask"), "rec-cancel", () => ask("cancel"));
  recPanel.append(recSelf, recStatus, recCancel);
  $("btn-recording").after(recPanel);
  let starting = false;

  function names(ids) {
    const byId = {};
    for (const p of P.people()) byId[p.id] = p.name;
    return ids.map((id) => byId[id] || "?").join(t("list_sep"));
  }
  async function ask(action) {
    const r = await P.socket.timeout(5000).emitWithAck("recording", { v: 1, action }).catch(() => null);
    if (!r || !r.ok) { $("call-status").textContent = i18n.error(r ? r.error.code : "timeout"); return; }
    if (action === "ask") P.recordingAsk = r.ask;
    else P.recordingAsk = null;
    render();
  }
  async function selfAnswer(yes) {
    recSelf.hidden = true;
    if (!yes) { render(); return; }
    const r = await cmd({ type: "record_consent", topic: "recording", given: true });
    if (r && (r.ok || r.error.code === "conflict")) {
      await viewReaches(r.seq);
      await ask("ask");
    }
  }
  function renderRecording(view, me) {
    const btn = $("btn-recording");
    const session = view.session || {};
    // only the mediator may start or stop (rooms/policy.py), and only where a recorder runs
    const offered = recordingOffered(view) && me.role === "mediator";
    btn.hidden = !offered;
    recPanel.hidden = !offered;
    if (!offered) return;
    const on = !!session.recording;
    btn.textContent = t(on ? "stop_recording" : "start_recording");
    btn.disabled = !on && !!P.recordingAsk;
    recSelfText.textContent = t("rec_self_q");
    const [yes, no] = recSelf.querySelectorAll("button");
    yes.textContent = t("rec_yes"); no.textContent = t("rec_no");
    const missing = (view.recording_missing || []).filter((id) => id !== me.id);
    const consent = (id) => ((P.people().find((p) => p.id === id) || {}).consents || {}).recording;
    const declined = missing.filter((id) => consent(id) === false);
    const waiting = missing.filter((id) => consent(id) !== false);
    const lines = [];
    if (on) {
      lines.push(t("rec_on") + (session.recording_by ? " · " + t("rec_by") + " " + session.recording_by : ""));
      if (missing.length) lines.push(tf(session.recording_paused ? "rec_paused_names" : "rec_held_names", { names: names(missing) }));
      const withdrawn = (view.recording_withdrawn || []).map((w) => w.participant);
      if (withdrawn.length) lines.push(tf("rec_withdrawn_by", { names: names(withdrawn) }));
    } else if (P.recordingAsk) {
      lines.push(t("rec_will_start"));
      if (waiting.length) lines.push(tf("rec_waiting_for", { names: names(waiting) }));
      if (declined.length) lines.push(tf("rec_declined_by", { names: names(declined) }));
    }
    recStatus.textContent = lines.join(" — ");
    recStatus.hidden = !lines.length;
    recCancel.hidden = on || !P.recordingAsk;
    recCancel.textContent = t("rec_cancel_ask");
    // everyone present agreed: start (once; rooms checks again and names who is missing)
    if (!on && P.recordingAsk && !missing.length && !starting && !session.ended) {
      starting = true;
      cmd({ type: "start_recording" }).finally(() => { starting = false; });
    }
  }

  $("form-caucus").onsubmit = (e) => {
    e.preventDefault();
    const name = $("caucus-name").value.trim().toLowerCase();
    const minutes = parseInt($("caucus-minutes").value, 10);
    const c = { type: "create_caucus", caucus: name };
    if (minutes > 0) c.seconds = minutes * 60;
    cmd(c).then((r) => { if (r && r.ok) $("caucus-name").value = ""; });
  };
  $("btn-return-joint").onclick = () => cmd({ type: "return_to_joint" });
  $("btn-recording").onclick = () => {
    const on = P.view && P.view.session && P.view.session.recording;
    if (on) { cmd({ type: "stop_recording" }); return; }
    // the mediator's own consent first (rooms refuses a start without it), then ask everyone
    if ((P.myself().consents || {}).recording === true) { ask("ask"); return; }
    recSelf.hidden = false;
    recSelf.querySelector("button").focus();
  };
  // S4: the call rings the duty-lawyer desk (signaling/desk_ring.py). The panel says so, with
  // the one-line question, then who accepted; the link to send by hand appears only when
  // nobody can answer (no lawyer on shift: at once) or nobody did within the ring time.
  const token = decodeURIComponent(location.pathname.split("/").pop());
  const question = document.createElement("input");
  question.id = "lawyer-question"; question.maxLength = 200;
  $("lawyer-name").after(question);
  $("lawyer-name").required = false;  // the desk's lawyer says who they are when they accept
  const ringBox = document.createElement("p");
  ringBox.id = "lawyer-ring"; ringBox.className = "lawyer-ring"; ringBox.setAttribute("role", "status");
  ringBox.hidden = true;
  $("lawyer-invite").before(ringBox);
  let ring = null;  // {pid, timer, shown}
  function ringUrl(pid) {
    return `/api/sessions/${encodeURIComponent(P.view.session.id)}/desk-ring/${encodeURIComponent(pid)}`;
  }
  async function ringApi(pid, body) {
    try {
      const r = await fetch(ringUrl(pid), {
        method: body ? "POST" : "GET", cache: "no-store",
        headers: Object.assign({ Authorization: "Bearer " + token }, body ? { "Content-Type": "application/json" } : {}),
        body: body ? JSON.stringify(body) : undefined,
      });
      return await r.json();
    } catch (e) { return { ok: false, error: { code: "timeout" } }; }
  }
  async function ringPoll() {
    if (!ring) return;
    const mine = ring;
    const r = await ringApi(mine.pid);
    if (ring !== mine) return;  // a newer call replaced this one
    if (!r.ok) {  // the desk cannot tell (no desk on this server): the link, with the reason
      ringBox.dataset.state = "unknown";
      ringBox.textContent = i18n.error(r.error.code);
      showLink(mine);
      return;
    }
    const g = r.ring;
    ringBox.dataset.state = g.state;
    ringBox.dataset.reason = g.reason || "";
    const q = g.question ? ` — ${g.question}` : "";
    if (g.state === "ringing" && !g.fallback) ringBox.textContent = "🔔 " + t("ring_ringing") + q;
    else if (g.state === "ringing") {
      ringBox.textContent = g.reason === "no_lawyer_on_shift" ? t("ring_no_lawyer")
        : tf("ring_no_answer", { s: Math.round(g.ring_seconds) });
      showLink(mine);
    } else if (g.state === "accepted") {
      ringBox.textContent = "✔ " + tf("ring_accepted", { name: g.lawyer_name || g.lawyer });
      $("lawyer-invite").hidden = true;
    } else {
      ringBox.textContent = t(g.state === "answered_by_link" ? "ring_by_link" : "ring_over");
      $("lawyer-invite").hidden = true;
      return;  // over: stop asking
    }
    mine.timer = setTimeout(ringPoll, 1000);
  }
  async function showLink(mine) {
    if (mine.shown) return;
    mine.shown = true;
    const link = await P.socket.timeout(5000).emitWithAck("invitation", { v: 1, participant: mine.pid }).catch(() => null);
    if (!link || !link.ok) { $("call-status").textContent = i18n.error(link ? link.error.code : "timeout"); return; }
    if (ring !== mine) return;
    const url = location.origin + link.path;
    $("lawyer-link").textContent = url; $("lawyer-link").href = url;
    $("lawyer-copy").textContent = t("copy_link");
    const hint = $("lawyer-invite").querySelector(".hint");
    if (hint) hint.hidden = true;  // the ring line above says why the link is here
    // The console's QR route for this participant (needs the staff login this page came from).
    const qr = $("lawyer-qr");
    qr.hidden = false;
    qr.onerror = () => { qr.hidden = true; };
    qr.src = `/console/sessions/${encodeURIComponent(P.view.session.id)}/qr/${encodeURIComponent(mine.pid)}.svg`;
    $("lawyer-invite").hidden = false;
    $("lawyer-invite").scrollIntoView({ block: "nearest" });
  }
  $("form-lawyer").onsubmit = async (e) => {
    e.preventDefault();
    const name = $("lawyer-name").value.trim() || t("ring_default_name");
    // rooms names a caucus by its name ("a"); the select's values are spaces ("caucus:a")
    const space = ($("lawyer-space").value.trim() || "joint").replace(/^caucus:/, "");
    const before = new Set(P.people().map((p) => p.id));
    $("lawyer-invite").hidden = true;
    const r = await cmd({ type: "call_duty_lawyer", name, space });
    if (!r || !r.ok) return;
    // The acknowledgement can arrive before the view that lists the lawyer: wait for it.
    await viewReaches(r.seq);
    const added = P.people().find((p) => !before.has(p.id) && p.role === "duty_lawyer");
    if (!added) { $("call-status").textContent = i18n.error("unknown"); return; }
    if (ring) clearTimeout(ring.timer);
    ring = { pid: added.id, timer: null, shown: false };
    ringBox.hidden = false;
    ringBox.textContent = "🔔 " + t("ring_ringing");
    const text = question.value.trim();
    if (text) {
      const a = await ringApi(added.id, { question: text });
      if (!a.ok) $("call-status").textContent = i18n.error(a.error.code);
      else question.value = "";
    }
    ringPoll();
  };
  $("lawyer-copy").onclick = async () => {
    const url = $("lawyer-link").href;
    const ok = await navigator.clipboard.writeText(url).then(() => true, () => false);
    if (!ok) window.getSelection().selectAllChildren($("lawyer-link"));  // copy by hand
    $("lawyer-copy").textContent = t(ok ? "copied" : "copy_by_hand");
  };

  // Resolves once the view this page shows includes ledger event ``seq`` (or after 10 s).
  function viewReaches(seq) {
    const reached = () => P.view && P.view.session && P.view.session.seq >= seq;
    if (seq == null || reached()) return Promise.resolve();
    return new Promise((resolve) => {
      const hook = () => { if (reached()) done(); };
      const timer = setTimeout(done, 10000);
      function done() {
        clearTimeout(timer);
        queueMicrotask(() => { const i = P.hooks.indexOf(hook); if (i >= 0) P.hooks.splice(i, 1); });
        resolve();
      }
      P.hooks.push(hook);
    });
  }
  $("btn-end").onclick = () => { if (confirm(t("host_confirm_end"))) cmd({ type: "end_session", reason: "ended by the mediator" }); };
  P.hooks.push(render);
  setInterval(() => { if (!$("host-panel").hidden) render(); }, 1000);
})();
