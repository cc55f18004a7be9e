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

  function personRow(p, view, me) {
    const li = document.createElement("li");
    li.dataset.participant = p.id;
    const label = document.createElement("span");
    const q = quality[p.id];
    label.title = q ? `${q.state}, loss ${q.loss === null ? "?" : Math.round(q.loss * 100) + "%"}` : "";
    const where = p.connected === false ? t("offline") : i18n.space(p.space);
    const flags = [p.identity_checked ? "✔ID" : "", p.muted ? "🔇" : "", p.asked_at ? "✋" : ""]
      .filter(Boolean).join(" ");
    label.textContent = `${signal(p.id)} ${p.name} · ${i18n.role(p.role)}${p.side ? " " + p.side : ""} · ${where} ${flags}`;
    li.appendChild(label);
    const box = document.createElement("span");
    box.className = "actions";
    const live = p.connected !== false && p.space !== "left" && p.space !== "removed";
    const b = (key, action, c) => box.appendChild(P.button(t(key), action, () => cmd(c)));
    if (live && p.space === "waiting") b("admit", "admit", { type: "admit", participant: p.id });
    if (live && p.space !== "waiting") b("to_waiting", "to-waiting", { type: "return_to_waiting", participant: p.id });
    for (const c of view.caucuses || []) {
      if (live && p.space !== "caucus:" + c.name) {
        box.appendChild(P.button(`→ ${c.name}`, "to-caucus",
          () => cmd({ type: "move_to_caucus", caucus: c.name, participants: [p.id] })));
      }
    }
    if (live) b(p.muted ? "unmute" : "mute", p.muted ? "unmute" : "mute",
      { type: p.muted ? "unmute" : "mute", participant: p.id });
    if (!p.identity_checked && p.space !== "left") b("id_checked", "identity",
      { type: "mark_identity_checked", participant: p.id, method: "video" });
    if (!p.identity_checked && p.role === "party" && live) {
      box.appendChild(P.button(t("send_code"), "send-code", async () => {
        const email = prompt(t("otp_email_prompt") + " " + p.name);
        if (!email) return;
        const r = await P.socket.timeout(20000).emitWithAck("otp",
          { v: 1, action: "send", participant: p.id, email: email.trim() }).catch(() => null);
        $("call-status").textContent = r && r.ok ? t("code_sent") : t("error") + (r ? r.error.message : "timeout");
      }));
    }
    if (p.space !== "left" && p.space !== "removed") {
      box.appendChild(P.button(t("remove"), "remove", () => {
        if (confirm(t("confirm_remove") + " " + p.name)) cmd({ type: "remove", participant: p.id });
      }));
    }
    li.appendChild(box);
    return li;
  }

  function caucusRow(c, me) {
    const li = document.createElement("li");
    li.dataset.caucus = c.name;
    const left = c.deadline ? Math.max(0, Math.round(c.deadline - Date.now() / 1000)) : null;
    const label = document.createElement("span");
    label.textContent = `${t("caucus")} ${c.name}` + (left !== null ? ` · ${fmt(left)}` : "");
    li.appendChild(label);
    const box = document.createElement("span");
    box.className = "actions";
    if (me.space !== "caucus:" + c.name) {
      box.appendChild(P.button(t("visit"), "visit", () => cmd({ type: "visit_caucus", caucus: c.name })));
    }
    for (const side of ["A", "B"]) {
      box.appendChild(P.button(`${t("side")} ${side} →`, "move-side-" + side,
        () => cmd({ type: "move_to_caucus", caucus: c.name, side })));
    }
    box.appendChild(P.button("+5′", "extend", () => cmd({ type: "extend_caucus_timer", caucus: c.name, seconds: 300 })));
    box.appendChild(P.button(t("close_caucus"), "close-caucus", () => cmd({ type: "close_caucus", caucus: c.name })));
    li.appendChild(box);
    return li;
  }

  function fmt(s) { return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`; }
  window.parleyFormatSeconds = fmt;

  function render() {
    const me = P.myself();
    const view = P.view || {};
    const host = isHost(me);
    $("host-panel").hidden = !host;
    if (!host) return;
    const ul = $("people");
    ul.textContent = "";
    for (const p of P.people()) if (p.id !== P.me) ul.appendChild(personRow(p, view, me));
    const cl = $("caucuses");
    cl.textContent = "";
    for (const c of view.caucuses || []) cl.appendChild(caucusRow(c, me));
    $("btn-return-joint").hidden = !(me.space || "").startsWith("caucus:");
    $("btn-recording").textContent = t(view.session && view.session.recording ? "stop_recording" : "start_recording");
    // offered only where a recorder runs (welcome.recording) and the policy allows recording
    $("btn-recording").hidden = !(P.recordingAvailable && view.session && view.session.recording_rule !== "forbidden");
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
    cmd({ type: on ? "stop_recording" : "start_recording" });
  };
  $("form-lawyer").onsubmit = async (e) => {
    e.preventDefault();
    const name = $("lawyer-name").value.trim();
    const space = $("lawyer-space").value.trim() || "joint";
    const before = new Set(P.people().map((p) => p.id));
    $("lawyer-invite").hidden = true;
    const r = await cmd({ type: "call_duty_lawyer", name, space });
    if (!r || !r.ok) return;
    // The acknowledgement can arrive before the view that lists the lawyer: wait for it.
    await viewReaches(r.seq);
    const added = P.people().find((p) => !before.has(p.id) && p.role === "duty_lawyer");
    if (!added) { $("call-status").textContent = t("error") + "lawyer not in the view"; return; }
    const link = await P.socket.timeout(5000).emitWithAck("invitation", { v: 1, participant: added.id }).catch(() => null);
    if (!link || !link.ok) { $("call-status").textContent = t("error") + (link ? link.error.message : "timeout"); return; }
    const url = location.origin + link.path;
    $("lawyer-link").textContent = url; $("lawyer-link").href = url;
    $("lawyer-copy").textContent = t("copy_link");
    // The console's QR route for this participant (needs the staff login this page came from).
    const qr = $("lawyer-qr");
    qr.hidden = false;
    qr.onerror = () => { qr.hidden = true; };
    qr.src = `/console/sessions/${encodeURIComponent(P.view.session.id)}/qr/${encodeURIComponent(added.id)}.svg`;
    $("lawyer-invite").hidden = false;
    $("lawyer-invite").scrollIntoView({ block: "nearest" });
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
  $("btn-end").onclick = () => { if (confirm(t("confirm_end"))) cmd({ type: "end_session", reason: "ended by the mediator" }); };
  P.hooks.push(render);
  setInterval(() => { if (!$("host-panel").hidden) render(); }, 1000);
})();
