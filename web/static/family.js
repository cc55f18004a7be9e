// The relatives' own page (/family): sign in with the phone or e-mail on the approved record and a
// one-time code, then request a visit (proposals at the chosen bureau), see, cancel or move one's
// bookings before the cutoff, order a family meal and see its status, read the education record.
// The session token stays in sessionStorage (gone with the tab); every call sends it as a bearer.
(function () {
  const $ = (id) => document.getElementById(id);
  const t = (k) => i18n.t(k);
  const KEY = "parley.family";
  const TABS = ["t-visit", "t-bookings", "t-meals", "t-record"];
  let token = sessionStorage.getItem(KEY) || "";
  let me = null;
  let moving = null;  // the booking being moved

  function el(tag, attrs = {}, text = "") {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text) e.textContent = text;
    return e;
  }
  function error(e) {
    const box = $("error");
    if (!e) { box.hidden = true; return; }
    box.hidden = false;
    box.dataset.code = e.code;
    box.textContent = i18n.has("f_err_" + e.code) ? t("f_err_" + e.code) : i18n.error(e.code);
  }
  let noticeKey = null;
  function notice(key) {
    noticeKey = key;
    const box = $("notice");
    box.hidden = !key;
    box.textContent = key ? t(key) : "";
  }
  async function api(method, path, body) {
    const headers = body ? { "Content-Type": "application/json" } : {};
    if (token) headers.Authorization = "Bearer " + token;
    try {
      const r = await fetch("/family/api" + path, {
        method, headers, body: body ? JSON.stringify(body) : undefined, cache: "no-store",
      });
      const data = await r.json().catch(() => ({ ok: false, error: { code: "unknown" } }));
      if (!data.ok && data.error.code === "unauthorized") signedOut();
      return data;
    } catch (e) {
      return { ok: false, error: { code: "network" } };
    }
  }
  function signedOut() {
    token = ""; me = null;
    sessionStorage.removeItem(KEY);
    $("s-home").hidden = true; $("s-login").hidden = false;
  }
  function record() { return me.records.find((r) => String(r.visitor) === $("record").value); }
  function status(s) { return i18n.has("f_status_" + s) ? t("f_status_" + s) : s; }
  function when(iso) { return iso.replace("T", " "); }
  function dayAhead(n) {
    const d = new Date(Date.now() + n * 86400000);
    return d.getFullYear() + "-" + String(d.getMonth() + 1).padStart(2, "0") + "-" +
      String(d.getDate()).padStart(2, "0");
  }

  // -- signing in ------------------------------------------------------------------------------
  $("send-code").addEventListener("click", async () => {
    error(null);
    const out = await api("POST", "/code", { contact: $("contact").value.trim() });
    if (!out.ok) return error(out.error);
    notice("f_code_sent");
    $("code").focus();
  });
  $("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error(null);
    const out = await api("POST", "/login", { contact: $("contact").value.trim(), code: $("code").value.trim() });
    if (!out.ok) return error(out.error);
    token = out.token;
    sessionStorage.setItem(KEY, token);
    notice(null);
    await load();
  });
  $("logout").addEventListener("click", async () => { await api("POST", "/logout"); signedOut(); });

  // -- the home screen -------------------------------------------------------------------------
  async function load() {
    const out = await api("GET", "/me");
    if (!out.ok) { if (out.error.code !== "unauthorized") error(out.error); return; }
    const keep = $("record").value;
    me = out;
    $("s-login").hidden = true; $("s-home").hidden = false;
    const sel = $("record");
    sel.replaceChildren(...me.records.map((r) => el("option", { value: String(r.visitor) },
      `${r.inmate.name} · ${r.inmate.facility_name}`)));
    if (me.records.some((r) => String(r.visitor) === keep)) sel.value = keep;
    $("bureau").replaceChildren(...me.bureaus.map((b) => el("option", { value: b.id }, b.name)));
    if (!$("date1").value) { $("date1").value = dayAhead(2); $("date1").min = dayAhead(1); }
    $("cutoff-line").textContent = t("f_cutoff").replace("{h}", String(me.cutoff_minutes / 60));
    renderRecord();
  }
  function renderRecord() {
    const r = record();
    $("record-line").textContent = `${t("f_you_are")} ${r.name} · ${t("f_until")} ${r.expires}`;
    $("not-visitable").hidden = r.inmate.visitable;
    $("visit-form").hidden = !r.inmate.visitable;
    $("co").replaceChildren(...(r.co_visitors.length ? r.co_visitors.map((c) => {
      const label = el("label", { class: "check" });
      label.append(el("input", { type: "checkbox", value: String(c.id), name: "co" }), ` ${c.name}`);
      return label;
    }) : [el("span", {}, "—")]));
    $("slots").replaceChildren();
    renderBookings(); renderMeals();
    $("entries").replaceChildren();
  }
  function renderBookings() {
    const list = $("bookings");
    list.replaceChildren(...(me.bookings.length ? me.bookings.map((b) => {
      const li = el("li", { "data-booking": String(b.id) });
      li.append(el("strong", {}, `${when(b.start)} · ${b.minutes}′`), el("br"),
        document.createTextNode(`${b.inmate} · ${b.bureau} · ${b.visitors.join("、")}`), el("br"),
        el("span", { class: "status", "data-status": b.status }, status(b.status)));
      if (b.can_change) {
        const cancel = el("button", { type: "button", class: "secondary" }, t("f_cancel"));
        cancel.addEventListener("click", async () => {
          if (!confirm(t("f_confirm_cancel"))) return;
          const out = await api("POST", `/bookings/${b.id}/cancel`);
          if (!out.ok) return error(out.error);
          notice("f_cancelled"); await load();
        });
        const move = el("button", { type: "button", class: "secondary" }, t("f_move"));
        move.addEventListener("click", () => {
          moving = b; $("move-box").hidden = false; $("move-slots").replaceChildren();
          $("move-date").value = dayAhead(3);
        });
        li.append(" ", cancel, " ", move);
      }
      return li;
    }) : [el("li", {}, t("f_none"))]));
  }
  function slotButtons(box, proposals, pick) {
    box.replaceChildren(...(proposals.length ? proposals.map((p) => {
      const b = el("button", { type: "button", class: "slot" }, `${when(p.start)} · ${p.minutes}′`);
      b.addEventListener("click", () => pick(p));
      return b;
    }) : [el("p", {}, t("f_no_slots"))]));
  }

  // -- a visit ---------------------------------------------------------------------------------
  $("visit-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error(null);
    const dates = [$("date1").value, $("date2").value].filter(Boolean);
    const out = await api("POST", "/proposals", { visitor: record().visitor, bureau: $("bureau").value, dates });
    if (!out.ok) return error(out.error);
    slotButtons($("slots"), out.proposals, async (p) => {
      const co = [...document.querySelectorAll("#co input:checked")].map((i) => Number(i.value));
      const res = await api("POST", "/bookings", {
        visitor: record().visitor, co_visitors: co, start: p.start, minutes: p.minutes,
        bureau_terminal: p.bureau_terminal, facility_terminal: p.facility_terminal, lang: i18n.lang,
      });
      if (!res.ok) return error(res.error);
      notice("f_requested"); await load(); tab("t-bookings");
    });
  });
  $("move-find").addEventListener("click", async () => {
    error(null);
    const out = await api("POST", `/bookings/${moving.id}/proposals`, { dates: [$("move-date").value] });
    if (!out.ok) return error(out.error);
    slotButtons($("move-slots"), out.proposals, async (p) => {
      const res = await api("POST", `/bookings/${moving.id}/reschedule`, {
        start: p.start, bureau_terminal: p.bureau_terminal, facility_terminal: p.facility_terminal,
      });
      if (!res.ok) return error(res.error);
      $("move-box").hidden = true; notice("f_moved"); await load();
    });
  });

  // -- meals and the record --------------------------------------------------------------------
  function renderMeals() {
    const r = record();
    const items = me.menus[r.inmate.facility] || [];
    $("menu").replaceChildren(...(items.length ? items.map((i) => {
      const label = el("label", { class: "meal-item" });
      label.append(`${i.name} · ¥${i.price} (${t("f_per_month")} ${i.per_month})`,
        el("input", { type: "number", min: "0", max: String(i.per_month), value: "0", "data-item": String(i.id), inputmode: "numeric" }));
      return label;
    }) : [el("p", {}, t("f_no_menu"))]));
    $("order").hidden = !items.length;
    const mine = me.orders.filter((o) => o.visitor === r.visitor);
    $("orders").replaceChildren(...(mine.length ? mine.map((o) => el("li", { "data-order": String(o.id) },
      `${when(o.placed_at)} · ${o.lines.map((l) => l.name + " × " + l.qty).join("、")} · ¥${o.total} · ` +
      status("meal_" + o.status))) : [el("li", {}, t("f_none"))]));
  }
  $("meal-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error(null);
    const lines = [...document.querySelectorAll("#menu input")]
      .map((i) => ({ item: Number(i.dataset.item), qty: Number(i.value) })).filter((l) => l.qty > 0);
    const out = await api("POST", "/meals", { visitor: record().visitor, lines });
    if (!out.ok) return error(out.error);
    notice("f_ordered"); await load();
  });
  $("open-record").addEventListener("click", async () => {
    error(null);
    const out = await api("POST", "/record", { visitor: record().visitor });
    if (!out.ok) return error(out.error);
    $("entries").replaceChildren(...(out.entries.length ? out.entries.map((e) => {
      const li = el("li");
      li.append(el("strong", {}, `${e.period} · ${t("f_kind_" + e.kind)} · ${e.title}`));
      if (e.detail) li.append(el("br"), document.createTextNode(e.detail));
      return li;
    }) : [el("li", {}, t("f_none"))]));
  });

  function tab(id) {
    for (const x of TABS) $(x).hidden = x !== id;
    document.querySelectorAll("[data-tab]").forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.tab === id)));
  }
  document.querySelectorAll("[data-tab]").forEach((b) => b.addEventListener("click", () => { error(null); notice(null); tab(b.dataset.tab); }));
  $("record").addEventListener("change", renderRecord);
  $("lang").addEventListener("click", () => { i18n.toggle(); notice(noticeKey); error(null); if (me) load(); });
  i18n.apply();
  tab("t-visit");
  if (token) load();
})();
