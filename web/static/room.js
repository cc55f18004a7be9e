// What everyone in a space sees besides the videos: where they are, the caucus countdown with
// its warnings, "ask for the mediator", and the chat of this space only.
(function () {
  const P = window.parley;
  const $ = (id) => document.getElementById(id);
  const t = (k) => i18n.t(k);
  let lastChat = -1;

  function render() {
    const me = P.myself();
    const view = P.view || {};
    const space = me.space || "";
    const inCaucus = space.startsWith("caucus:");
    $("btn-ask").hidden = !(space === "waiting" || inCaucus) || me.role === "mediator";
    $("btn-ask").disabled = !!me.asked_at;
    $("btn-ask").textContent = me.asked_at ? t("asked") : t("ask_mediator");
    renderTimer(view, space);
    renderChat(view);
    renderDocs(view);
    renderRecordingQuestion(view, me);
    $("chat-panel").hidden = !(space === "joint" || inCaucus || space === "visit");
  }

  // -- the recording question (R8): asked in the call, of whoever stands in the recorded room
  // without having agreed, when the mediator asks (socket.io "recording_ask") or while a
  // recording runs (a late joiner: held silent and unseen, or the recording pauses — the
  // session's policy decides, the server enforces it). "No" ejects nobody.
  // The open question is host.js's P.recordingAsk (kept from "welcome" and "recording_ask").
  const answeredKey = () => `parley.rec-answer.${(P.view && P.view.session && P.view.session.id) || ""}`;
  const box = document.createElement("div");
  box.id = "rec-ask"; box.className = "host-notice rec-ask"; box.setAttribute("role", "alertdialog");
  box.hidden = true;
  const question = document.createElement("p");
  question.id = "rec-ask-text";
  const note = document.createElement("p");
  note.id = "rec-ask-note"; note.className = "hint";
  const yes = P.button("", "rec-yes", () => answer(true));
  const no = P.button("", "rec-no", () => answer(false));
  box.append(question, note, yes, no);
  $("host-notice").after(box);
  // A consent given can be withdrawn while the recording runs: rooms pauses it (or holds the
  // person, as the session's policy says), tells the mediator who, and records the gap.
  const withdraw = P.button("", "rec-withdraw", () => answer(false));
  withdraw.id = "rec-withdraw";
  withdraw.hidden = true;
  box.after(withdraw);
  let answering = false;

  async function answer(given) {
    if (answering) return;
    answering = true;
    const r = await P.command({ type: "record_consent", topic: "recording", given });
    answering = false;
    // "conflict": this answer was already on record (a second "no" to a second question)
    if (r && (r.ok || r.error.code === "conflict")) {
      const ask = P.recordingAsk;
      if (ask) sessionStorage.setItem(answeredKey(), String(ask.id));
      render();
    }
  }

  function renderRecordingQuestion(view, me) {
    const session = view.session || {};
    const ask = P.recordingAsk;
    const given = (me.consents || {}).recording;
    const here = !!me.space && me.space === session.main_space && me.role !== "observer";
    const gated = P.recordingAvailable && session.recording_rule === "consent_gated" && !session.ended;
    const asked = !!ask && sessionStorage.getItem(answeredKey()) !== String(ask.id);
    const show = gated && here && given !== true && (session.recording || asked);
    // the mediator stops the recording instead (host.js); nobody else has a switch
    withdraw.hidden = !(gated && here && given === true && session.recording && me.role !== "mediator");
    withdraw.textContent = t("rec_withdraw");
    box.hidden = !show;
    box.dataset.state = !show ? "" : session.recording ? (session.recording_paused ? "paused" : "held") : "asked";
    if (!show) return;
    const by = session.recording ? (session.recording_by || "") : ask.by;
    const key = !session.recording ? "rec_ask_q" : session.recording_paused ? "rec_paused_q" : "rec_held_q";
    question.textContent = i18n.tf(key, { by });
    note.textContent = given === false ? t("rec_declined") : session.recording ? "" : t("rec_ask_note");
    note.hidden = !note.textContent;
    yes.textContent = t(given === false ? "rec_change_yes" : "rec_yes");
    no.textContent = t("rec_no");
    no.hidden = given === false && !!session.recording;  // held: only a change of mind is left
  }

  function renderTimer(view, space) {
    const el = $("caucus-timer");
    const c = (view.caucuses || []).find((x) => "caucus:" + x.name === space);
    if (!c || !c.deadline) { el.hidden = true; return; }
    const left = Math.max(0, Math.round(c.deadline - Date.now() / 1000));
    el.hidden = false;
    el.textContent = `${t("time_left")} ${window.parleyFormatSeconds(left)}`;
    el.classList.toggle("warn", left <= 60);
    el.classList.toggle("urgent", left <= 10);
  }

  function renderChat(view) {
    const list = $("chat-list");
    const msgs = view.chat || [];
    const lastSeq = msgs.length ? msgs[msgs.length - 1].seq : -1;
    if (lastSeq === lastChat && list.childElementCount === msgs.length) return;
    lastChat = lastSeq;
    const names = {};
    for (const p of P.people()) names[p.id] = p.name;
    list.textContent = "";
    for (const m of msgs) {
      const li = document.createElement("li");
      const who = document.createElement("strong");
      who.textContent = (names[m.from] || "?") + ": ";
      li.append(who, document.createTextNode(m.text));
      list.appendChild(li);
    }
    list.scrollTop = list.scrollHeight;
  }

  let docsShown = "";
  function renderDocs(view) {
    const docs = view.documents || [];
    const key = docs.map((d) => d.document).join(",");
    if (key === docsShown) return;
    docsShown = key;
    const list = $("doc-list");
    list.textContent = "";
    for (const d of docs) {
      const li = document.createElement("li");
      li.dataset.document = d.document;
      li.textContent = `${d.name} (${Math.ceil(d.size / 1024)} KB) `;
      li.appendChild(P.button(t("open_document"), "open-document", () => openDocument(d)));
      list.appendChild(li);
    }
  }

  const token = decodeURIComponent(location.pathname.split("/").pop());
  async function openDocument(d) {
    const sid = P.view.session.id;
    const r = await fetch(`/api/sessions/${sid}/documents/${d.document}`,
      { headers: { Authorization: "Bearer " + token } });
    if (!r.ok) return;
    const url = URL.createObjectURL(await r.blob());
    const a = document.createElement("a");
    a.href = url; a.download = d.name; a.target = "_blank"; a.rel = "noopener";
    document.body.appendChild(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  }

  $("doc-file").onchange = async () => {
    const file = $("doc-file").files[0];
    if (!file) return;
    const body = new FormData();
    body.append("file", file, file.name);
    $("call-status").textContent = t("uploading");
    const r = await fetch(`/api/sessions/${P.view.session.id}/documents`,
      { method: "POST", body, headers: { Authorization: "Bearer " + token } });
    const reply = await r.json().catch(() => ({ ok: false, error: { code: "unknown" } }));
    $("call-status").textContent = reply.ok ? "" : i18n.error(reply.error.code);
    $("doc-file").value = "";
  };

  P.socket.on("otp_sent", () => { $("otp-form").hidden = false; $("otp-code").focus(); });
  $("otp-form").onsubmit = async (e) => {
    e.preventDefault();
    const code = $("otp-code").value.trim();
    const r = await P.socket.timeout(5000).emitWithAck("otp", { v: 1, action: "verify", code }).catch(() => null);
    if (r && r.ok) { $("otp-form").hidden = true; $("call-status").textContent = t("code_ok"); }
    else $("call-status").textContent = i18n.error(r ? r.error.code : "timeout");
  };

  $("btn-ask").onclick = () => P.command({ type: "ask_for_mediator" });
  $("form-chat").onsubmit = (e) => {
    e.preventDefault();
    const text = $("chat-text").value.trim();
    if (!text) return;
    P.command({ type: "chat", text }).then((r) => { if (r && r.ok) $("chat-text").value = ""; });
  };
  P.hooks.push(render);
  setInterval(() => { if (P.view) renderTimer(P.view, P.myself().space || ""); }, 1000);
})();
