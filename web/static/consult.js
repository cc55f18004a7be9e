// The citizen's consultation page: a form (name, phone with a one-time code, topic, an
// interpreter on request, optional documents, consents), then the live queue (position and estimated wait, polled every 2 s: the polling is also the
// citizen's presence), the lawyer's call, the summary and the rating. When nobody is on duty,
// the opening hours and a call-back time instead of the queue.
(function () {
  const $ = (id) => document.getElementById(id);
  const t = (k) => i18n.t(k);
  const TOPICS = ["family", "labour", "debt", "neighbour", "other"];
  const INTERPRETERS = ["", "sign", "bo", "ug", "mn", "en", "other"];  // "" no interpreter
  const SCREENS = ["s-form", "s-queue", "s-ready", "s-callback", "s-done", "s-gone"];
  const path = location.pathname.split("/").filter(Boolean);  // consult, <point> | consult, t, <secret>
  let point = path[1] !== "t" ? decodeURIComponent(path[1] || "") : "";
  let secret = path[1] === "t" ? decodeURIComponent(path[2] || "") : "";
  let info = null;
  let last = null;
  let stars = 0;
  let docsError = null;  // a refused attachment stays said while the queue refreshes

  function show(id) { for (const s of SCREENS) $(s).hidden = s !== id; }
  function error(e) {
    const el = $("error");
    if (!e) { el.hidden = true; return; }
    el.hidden = false;
    el.textContent = i18n.has("c_err_" + e.code) ? t("c_err_" + e.code) : i18n.error(e.code);
  }
  async function api(method, url, body) {
    try {
      const r = await fetch(url, {
        method, headers: body ? { "Content-Type": "application/json" } : {},
        body: body ? JSON.stringify(body) : undefined, cache: "no-store",
      });
      const data = await r.json().catch(() => ({ ok: false, error: { code: "unknown", message: String(r.status) } }));
      return data;
    } catch (e) {
      return { ok: false, error: { code: "network", message: "" } };
    }
  }
  function minutes(seconds) {
    if (seconds === null || seconds === undefined) return t("c_eta_unknown");
    if (seconds < 60) return t("c_eta_now");
    return t("c_eta_minutes").replace("{n}", String(Math.ceil(seconds / 60)));
  }

  // -- the form ---------------------------------------------------------------------------------
  function fillTopics() {
    const sel = $("topic"), chosen = sel.value;
    sel.textContent = "";
    for (const k of TOPICS) sel.appendChild(new Option(t("c_topic_" + k), k));
    if (chosen) sel.value = chosen;
    const isel = $("interpreter"), lang = isel.value;
    isel.textContent = "";
    for (const k of INTERPRETERS) isel.appendChild(new Option(t("c_interp_" + (k || "none")), k));
    isel.value = lang;
  }
  function renderInfo() {
    if (!info) return;
    $("point-name").textContent = info.name;
    const closed = info.on_duty === 0;
    $("closed-box").hidden = !closed;
    $("at-box").hidden = !closed;
    $("hours").textContent = hoursText(info.hours);
    $("next-open").textContent = info.next_opening ? t("c_next_open") + " " + info.next_opening.replace("T", " ") : "";
    $("duty-line").textContent = closed ? t("c_nobody")
      : t("c_on_duty").replace("{n}", info.on_duty).replace("{w}", info.waiting);
    $("submit").textContent = t(closed ? "c_callback" : "c_join");
  }
  // "1-5 09:00-17:00; 6 09:00-12:00" in words: weekday numbers become day names.
  function hoursText(hours) {
    const day = (n) => t("c_day_" + n);
    return hours.split(";").map((group) => {
      const [days, ...spans] = group.trim().split(/\s+/);
      const names = days.split(",").map((p) => p.split("-").map(day).join("–")).join(", ");
      return `${names} ${spans.join(", ")}`;
    }).join("; ");
  }
  async function loadPoint() {
    const r = await api("GET", `/consult/api/points/${encodeURIComponent(point)}`);
    if (!r.ok) { error(r.error); return; }
    info = r.point;
    renderInfo();
  }

  $("send-code").onclick = async () => {
    error(null);
    $("code-status").textContent = "";
    const r = await api("POST", `/consult/api/points/${encodeURIComponent(point)}/code`, { phone: $("phone").value.trim() });
    if (!r.ok) { error(r.error); return; }
    $("code-status").textContent = t("c_code_sent");
    $("code").focus();
  };
  // Checked here to say so before queueing; the server checks again (type by content, size).
  const MAX_DOCS = 3, MAX_DOC_BYTES = 10 * 1024 * 1024, DOC_TYPES = ["application/pdf", "image/jpeg", "image/png"];
  function docsProblem(files) {
    if (files.length > MAX_DOCS) return "too_many_documents";
    if (files.some((f) => f.size > MAX_DOC_BYTES)) return "too_large";
    if (files.some((f) => f.type && !DOC_TYPES.includes(f.type))) return "unsupported_type";
    return null;
  }
  async function sendDocs(files) {
    for (const f of files) {
      const form = new FormData();
      form.append("file", f, f.name);
      try {
        const r = await fetch(`/consult/api/tickets/${encodeURIComponent(secret)}/documents`, { method: "POST", body: form });
        const data = await r.json().catch(() => ({ ok: false, error: { code: "unknown" } }));
        if (!data.ok) { docsError = data.error; return; }
      } catch (e) { docsError = { code: "network" }; return; }
    }
  }
  $("form").onsubmit = async (e) => {
    e.preventDefault();
    error(null);
    if (!$("consent-online").checked) { error({ code: "consent_required" }); return; }
    const files = Array.from($("docs").files || []);
    const problem = docsProblem(files);
    if (problem) { error({ code: problem }); return; }
    const body = {
      name: $("name").value.trim(), phone: $("phone").value.trim(), code: $("code").value.trim(),
      topic: $("topic").value, consent_online: true, consent_recording: $("consent-recording").checked,
      lang: i18n.lang, interpreter: $("interpreter").value,
    };
    const closed = info && info.on_duty === 0;
    if (closed) body.at = $("at").value;
    const r = await api("POST", `/consult/api/points/${encodeURIComponent(point)}/${closed ? "callback" : "join"}`, body);
    if (!r.ok) { error(r.error); return; }
    secret = r.ticket;
    localStorage.setItem("parley.consult." + point, secret);
    history.replaceState(null, "", `/consult/t/${encodeURIComponent(secret)}`);
    if (files.length) await sendDocs(files);  // queued first: the place does not wait for them
    poll();
  };

  // -- the ticket -------------------------------------------------------------------------------
  let timer = null;
  async function poll() {
    clearTimeout(timer);
    const r = await api("GET", `/consult/api/tickets/${encodeURIComponent(secret)}`);
    if (!r.ok) {
      if (r.error.code === "not_found") {
        localStorage.removeItem("parley.consult." + point);
        secret = "";
        if (point) { history.replaceState(null, "", `/consult/${encodeURIComponent(point)}`); show("s-form"); loadPoint(); }
        else show("s-gone");
        return;
      }
      error(r.error);  // a network blip: keep trying, the place is kept
      timer = setTimeout(poll, 3000);
      return;
    }
    error(docsError);
    last = r.ticket;
    if (!point) { point = last.point; localStorage.setItem("parley.consult." + point, secret); loadPoint(); }
    render();
    if (["waiting", "serving", "callback"].includes(last.state)) timer = setTimeout(poll, 2000);
  }
  function render() {
    const tk = last;
    if (!tk) return;
    $("again").href = `/consult/${encodeURIComponent(tk.point || point)}`;
    if (tk.state === "waiting") {
      show("s-queue");
      $("position").textContent = String(tk.position);
      $("eta").textContent = minutes(tk.eta_seconds);
      $("docs-line").hidden = !(tk.documents && tk.documents.length);
      $("docs-sent").textContent = (tk.documents || []).join("、");
    } else if (tk.state === "serving" && tk.join_path) {
      show("s-ready");
      $("join-call").href = tk.join_path;
      // go to the call at once, once; coming back (the back button) shows the button instead
      const key = "parley.consult.went." + secret;
      if (!sessionStorage.getItem(key)) { sessionStorage.setItem(key, "1"); location.assign(tk.join_path); }
    } else if (tk.state === "serving") {
      show("s-queue");
    } else if (tk.state === "callback") {
      show("s-callback");
      $("callback-at").textContent = (tk.callback_at || "").replace("T", " ");
    } else if (tk.state === "done") {
      show("s-done");
      $("summary").textContent = tk.summary || "";
      $("referral-box").hidden = !tk.referral;
      $("referral-note").textContent = tk.referral_note || "";
      $("rating-form").hidden = tk.rating !== null && tk.rating !== undefined;
      $("rated").hidden = !$("rating-form").hidden;  // thanks once rated, instead of the form
    } else {
      show("s-gone");
      localStorage.removeItem("parley.consult." + (tk.point || point));
    }
  }
  async function leave() {
    const r = await api("POST", `/consult/api/tickets/${encodeURIComponent(secret)}/leave`);
    if (!r.ok) { error(r.error); return; }
    poll();
  }
  $("leave").onclick = leave;
  $("cancel-callback").onclick = leave;

  function renderStars() {
    const box = $("stars");
    box.textContent = "";
    for (let i = 1; i <= 5; i++) {
      const b = document.createElement("button");
      b.type = "button"; b.className = "star" + (i <= stars ? " on" : "");
      b.dataset.stars = String(i);
      b.setAttribute("role", "radio"); b.setAttribute("aria-checked", String(i === stars));
      b.setAttribute("aria-label", t("c_stars").replace("{n}", i));
      b.textContent = i <= stars ? "★" : "☆";
      b.onclick = () => { stars = i; renderStars(); };
      box.appendChild(b);
    }
  }
  $("rating-form").onsubmit = async (e) => {
    e.preventDefault();
    if (!stars) { error({ code: "no_stars" }); return; }
    const r = await api("POST", `/consult/api/tickets/${encodeURIComponent(secret)}/rating`,
      { stars, comment: $("comment").value.trim() });
    if (!r.ok) { error(r.error); return; }
    error(null);
    poll();
  };

  function applyLang() {
    i18n.apply();
    fillTopics();
    renderInfo();
    renderStars();
    render();
  }
  $("lang").onclick = () => { i18n.toggle(); applyLang(); };
  applyLang();
  if (!secret && point) secret = localStorage.getItem("parley.consult." + point) || "";
  if (secret) {
    if (location.pathname.indexOf("/consult/t/") !== 0) history.replaceState(null, "", `/consult/t/${encodeURIComponent(secret)}`);
    if (point) loadPoint();
    poll();
  } else if (point) {
    show("s-form");
    loadPoint();
    // a shift may start (or end) while the form is open: who is on duty, refreshed
    setInterval(() => { if (!secret) loadPoint(); }, 30000);
  } else {
    show("s-gone");
  }
})();
