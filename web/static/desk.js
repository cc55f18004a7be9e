// The duty lawyer's desk: the queue of the points where a shift covers now, pick up (the next
// or a chosen caller), the consultation in progress with its summary form, call-backs, today's
// figures. Polls /desk/api/state every 2 s; rings (a chime and the title) when a caller arrives
// while the lawyer is available. Staff pages say everything in both languages, like the console.
// Also the poster page's print button.
(function () {
  const $ = (id) => document.getElementById(id);
  const print = $("print");
  if (print) print.onclick = () => window.print();
  const root = $("desk");
  if (!root) return;
  const csrf = root.dataset.csrf;
  const KIND = { citizen: "市民 Citizen", mediation: "调解支持 Mediation" };
  const STATUS = { available: "可接听 Available", busy: "咨询中 Busy", away: "暂离 Away" };
  const INTERP = { sign: "手语 Sign language", bo: "藏语 Tibetan", ug: "维吾尔语 Uyghur", mn: "蒙古语 Mongolian",
    en: "英语 English", other: "其他语言 Other language" };
  let state = null;
  let seen = new Set();
  let summaryDraft = null;

  async function api(method, url, body) {
    try {
      const r = await fetch(url, {
        method, cache: "no-store",
        headers: body ? { "Content-Type": "application/json", "X-CSRF-Token": csrf } : {},
        body: body ? JSON.stringify(body) : undefined,
      });
      return await r.json().catch(() => ({ ok: false, error: { code: "http_" + r.status, message: "" } }));
    } catch (e) {
      return { ok: false, error: { code: "network", message: "网络中断 Network lost" } };
    }
  }
  function el(tag, attrs = {}, ...children) {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "onclick") n.onclick = v; else if (k in n && k !== "list") n[k] = v; else n.setAttribute(k, v);
    }
    for (const c of children) n.append(c);
    return n;
  }
  function mmss(s) { return `${Math.floor(s / 60)}:${String(Math.max(0, s) % 60).padStart(2, "0")}`; }
  function fail(r) {
    let box = $("desk-error");
    if (!box) { box = el("p", { id: "desk-error", className: "error", role: "alert" }); root.prepend(box); }
    box.hidden = !r || r.ok;
    if (r && !r.ok) box.textContent = `${r.error.code}: ${r.error.message}`;
  }

  let audio = null;
  async function ring() {
    document.title = "🔔 " + document.title.replace(/^🔔 /, "");
    try {
      audio = audio || new AudioContext();
      if (audio.state !== "running") await audio.resume();
      const t0 = audio.currentTime + 0.02;
      [[880, 0], [660, 0.22], [880, 0.44]].forEach(([f, at]) => {
        const o = audio.createOscillator(), g = audio.createGain();
        o.frequency.value = f;
        g.gain.setValueAtTime(0.0001, t0 + at);
        g.gain.exponentialRampToValueAtTime(0.3, t0 + at + 0.02);
        g.gain.exponentialRampToValueAtTime(0.0001, t0 + at + 0.2);
        o.connect(g).connect(audio.destination);
        o.start(t0 + at); o.stop(t0 + at + 0.22);
      });
    } catch (e) { /* no audio: the title still shows the bell */ }
  }

  function renderMe(d) {
    const me = $("me");
    me.textContent = "";
    if (!d.on_shift.length) {
      me.append(el("p", { className: "off-shift" },
        "您现在不在值班时间，来电不会转给您。 You are not on shift now: calls do not reach you."));
    } else {
      const names = d.points.filter((p) => d.on_shift.includes(p.id)).map((p) => p.name).join("、");
      me.append(el("p", {}, `值班中 On shift: ${names} · 状态 Status: `,
        el("strong", { id: "my-status", "data-status": d.status }, STATUS[d.status] || d.status)));
      if (d.status !== "busy") {
        const other = d.status === "available" ? "away" : "available";
        me.append(el("button", {
          type: "button", id: "toggle-status", className: other === "available" ? "primary" : "",
          onclick: async () => { const r = await api("POST", "/desk/api/status", { status: other }); fail(r); refresh(); },
        }, other === "available" ? "开始接听 Go available" : "暂离 Go away"));
      }
    }
    if (d.shifts.length) {
      me.append(el("p", { className: "hint" }, "我的值班 My shifts: " +
        d.shifts.map((s) => `${s.point} ${s.start.replace("T", " ")}–${s.end.slice(11)}`).join("; ")));
    }
  }

  // What the citizen attached: links the lawyer opens (each read is logged on the ticket).
  function docLinks(r) {
    const docs = r.documents || [];
    if (!docs.length) return "";
    const box = el("span", { className: "docs", "data-docs": String(docs.length) }, "材料 Documents: ");
    docs.forEach((doc, i) => {
      if (i) box.append(" · ");
      box.append(el("a", {
        href: `/desk/api/tickets/${r.id}/documents/${encodeURIComponent(doc.id)}`, target: "_blank",
        rel: "noopener", "data-doc": doc.id, title: "查阅会被记录 Opening is logged",
      }, `${doc.name} (${Math.max(1, Math.round(doc.size / 1024))} KB)`));
    });
    return box;
  }

  function renderQueue(d) {
    const table = $("queue");
    table.textContent = "";
    table.append(el("tr", {}, ...["类型 Kind", "姓名 Name", "问题 Topic", "已等 Waited", "语言 Lang", "", ""].map((h) => el("th", {}, h))));
    if (!d.queue.length) table.append(el("tr", {}, el("td", { colSpan: 7 }, d.on_shift.length ? "没有人排队 Nobody is waiting" : "—")));
    for (const r of d.queue) {
      const flags = [r.returning ? `回访 Returning (${r.returning})` : "", r.present ? "" : "暂离 Away (place kept)",
        r.recording_consent ? "同意录制 Consents to recording" : "",
        r.interpreter ? `需要翻译 Interpreter: ${INTERP[r.interpreter] || r.interpreter}` : ""].filter(Boolean).join(" · ");
      const topic = r.kind === "mediation" ? `${r.topic_label} · ${r.question}` : r.topic_label;
      const kind = r.transfer_from ? `转接自 Transferred from ${r.transfer_from}`
        : r.flag === "legal_aid_visitation" ? "法律援助（会见）Legal aid (visitation)" : (KIND[r.kind] || r.kind);
      const pick = el("button", {
        type: "button", className: "small", "data-ticket": String(r.id), "data-action": "pickup",
        onclick: () => pickup(r.id),
      }, "接听 Pick up");
      pick.disabled = !!d.current || !r.present;
      table.append(el("tr", { "data-ticket": String(r.id), "data-kind": r.transfer_from ? "transfer" : r.kind, "data-flag": r.flag || "" },
        el("td", {}, kind), el("td", {}, r.name), el("td", {}, topic),
        el("td", {}, mmss(r.waited)), el("td", {}, r.lang === "en" ? "English" : "中文"),
        el("td", {}, flags, flags && r.documents && r.documents.length ? " · " : "", docLinks(r)), el("td", {}, pick)));
    }
    $("pickup-next").hidden = !d.on_shift.length || !!d.current || !d.queue.some((r) => r.present);
  }

  async function pickup(ticket) {
    const r = await api("POST", "/desk/api/pickup", ticket ? { ticket } : {});
    fail(r);
    if (r.ok && r.current.join_path) window.open(r.current.join_path, "_blank", "noopener");
    refresh();
  }
  $("pickup-next").onclick = () => pickup(null);

  function renderCurrent(d) {
    const box = $("current");
    const c = d.current;
    box.hidden = !c;
    if (!c) { box.textContent = ""; box.dataset.ticket = ""; summaryDraft = null; return; }
    if (box.dataset.ticket === String(c.id)) { renderTransfer(c); renderDocs(c); return; }  // keep the typing
    box.dataset.ticket = String(c.id);
    box.textContent = "";
    const mediation = c.kind === "mediation";
    box.append(el("h2", {}, mediation ? "调解支持中 In a mediation" : "咨询中 Consultation in progress"));
    box.append(el("p", {}, `${c.name} · ${mediation ? c.question : c.topic_label}`));
    if (!mediation) { box.append(el("p", { id: "current-docs" })); renderDocs(c); }
    if (!mediation && c.interpreter) box.append(interpreterBox(c));
    if (c.join_path) {
      box.append(el("p", {}, el("a", { className: "button primary", id: "open-call", href: c.join_path, target: "_blank", rel: "noopener" },
        mediation ? "进入调解室 Open the mediation room" : "打开视频通话 Open the video call")));
    }
    if (!mediation && c.returning) {
      const hist = el("div", { id: "history" });
      box.append(el("p", {}, el("button", {
        type: "button", id: "show-history",
        onclick: async () => {
          const r = await api("POST", "/desk/api/history", { ticket: c.id });
          fail(r);
          if (!r.ok) return;
          hist.textContent = "";
          for (const h of r.history) {
            hist.append(el("article", { className: "earlier" }, el("h4", {}, `${h.date.replace("T", " ")} · ${h.topic_label} · ${h.lawyer}`),
              el("p", {}, h.summary || ""), h.referral ? el("p", {}, "法律援助转介 Legal-aid referral: " + h.referral_note) : ""));
          }
        },
      }, `查看以往咨询（${c.returning}）Earlier consultations (${c.returning}) — 查阅会被记录 reading is logged`)), hist);
    }
    const summary = el("textarea", { id: "summary", maxLength: 4000, rows: 6, required: true });
    const referral = el("input", { type: "checkbox", id: "referral" });
    const note = el("input", { id: "referral-note", maxLength: 500 });
    const form = el("form", { className: "stack", id: "end-form" },
      el("label", {}, mediation ? "记录 Note for the record" : "咨询小结（市民可见）Summary (the citizen sees it)", summary),
      el("label", { className: "check" }, referral, " 转介法律援助 Refer to legal aid"),
      el("label", {}, "转介说明 Referral note", note),
      el("button", { type: "submit", className: "primary big" }, mediation ? "结束支持 Finish" : "结束咨询并发送小结 End and send the summary"));
    form.onsubmit = async (e) => {
      e.preventDefault();
      const r = await api("POST", "/desk/api/end", {
        ticket: c.id, summary: summary.value, referral: referral.checked, referral_note: note.value,
      });
      fail(r);
      if (r.ok) refresh();
    };
    box.append(form);
    if (!mediation) {
      const aid = el("button", { type: "button", id: "to-legal-aid", className: "" },
        "转为法律援助案件（以上小结）Open a legal-aid case (with the summary above)");
      aid.onclick = async () => {
        if (!summary.value.trim()) { summary.reportValidity(); return; }
        const r = await api("POST", "/desk/api/legal-aid", { ticket: c.id, summary: summary.value });
        fail(r);
        if (r.ok) location.reload();  // the case appears in the hall's legal-aid list below
      };
      box.append(el("p", {}, aid), el("div", { id: "transfer" }));
      renderTransfer(c);
    }
  }

  // Files the citizen attaches during the call appear without disturbing the summary's typing.
  function renderDocs(c) {
    const p = $("current-docs");
    const key = (c.documents || []).map((d) => d.id).join(",");
    if (!p || p.dataset.key === key) return;
    p.dataset.key = key;
    p.textContent = "";
    p.append(docLinks(c));
  }

  // The interpreter the citizen asked for: its link and QR code, sent by the lawyer; the desk
  // admits the interpreter into the call. One interpreter: the server refuses a second.
  function interpreterBox(c) {
    const out = el("div", { id: "interpreter", "data-state": c.interpreter_state || "" });
    const shown = el("div", { id: "interpreter-link" });
    out.append(el("p", {}, `市民需要翻译 The citizen asked for an interpreter: ${INTERP[c.interpreter] || c.interpreter} `,
      el("button", {
        type: "button", id: "invite-interpreter",
        onclick: async () => {
          const r = await api("POST", "/desk/api/interpreter", { ticket: c.id });
          fail(r);
          if (!r.ok) return;
          shown.textContent = "";
          shown.append(el("p", {}, "请把此链接或二维码发给翻译 Send this link or QR code to the interpreter: ",
            el("input", { readOnly: true, value: r.url, size: 60, id: "interpreter-url" })),
            el("img", { alt: "QR", width: 180, height: 180, src: "data:image/svg+xml;charset=utf-8," + encodeURIComponent(r.qr_svg) }));
        },
      }, "邀请翻译 Invite the interpreter")), shown);
    return out;
  }

  // Hand the citizen to a colleague on shift at the same point: they stay with me until the
  // colleague accepts on their desk; I can take the offer back until then.
  function renderTransfer(c) {
    const box = $("transfer");
    if (!box) return;
    const key = JSON.stringify([c.transfer_to, c.colleagues]);
    if (box.dataset.key === key) return;
    box.dataset.key = key;
    box.textContent = "";
    if (c.transfer_to) {
      box.append(el("p", { id: "transfer-pending", role: "status" },
        `正在转给 ${c.transfer_to}，等待对方接听 Waiting for ${c.transfer_to} to accept the transfer `),
        el("button", { type: "button", id: "transfer-cancel", onclick: () => transfer(c.id, "") }, "取消转接 Take it back"));
      return;
    }
    const others = c.colleagues || [];
    if (!others.length) {
      box.append(el("p", { className: "hint" }, "本服务点没有其他值班律师 No other lawyer is on shift at this point"));
      return;
    }
    const pick = el("select", { id: "transfer-to", "aria-label": "lawyer" });
    for (const o of others) pick.append(new Option(`${o.username} · ${STATUS[o.status] || o.status}`, o.username));
    box.append(el("p", {}, "转给其他值班律师 Transfer to another lawyer on shift: ", pick, " ",
      el("button", { type: "button", id: "transfer-go", onclick: () => transfer(c.id, pick.value) }, "转接 Transfer")));
  }
  async function transfer(ticket, to) {
    const r = await api("POST", "/desk/api/transfer", { ticket, to });
    fail(r);
    refresh();
  }

  function renderCallbacks(d) {
    const table = $("callbacks");
    table.textContent = "";
    table.append(el("tr", {}, ...["时间 When", "姓名 Name", "问题 Topic", "电话 Phone", ""].map((h) => el("th", {}, h))));
    if (!d.callbacks.length) table.append(el("tr", {}, el("td", { colSpan: 5 }, "—")));
    for (const r of d.callbacks) {
      const aid = r.flag === "legal_aid_visitation";
      const call = el("button", {
        type: "button", className: "small", "data-action": "call-back",
        onclick: async () => {
          const res = await api("POST", "/desk/api/callback", { ticket: r.id });
          fail(res);
          if (res.ok && res.current.join_path) window.open(res.current.join_path, "_blank", "noopener");
          refresh();
        },
      }, "视频回电 Call back by video");
      call.disabled = !!d.current || d.status === "busy";
      table.append(el("tr", { "data-ticket": String(r.id), "data-flag": r.flag || "" },
        el("td", {}, r.at.replace("T", " ")), el("td", {}, r.name),
        el("td", {}, (aid ? "法律援助（会见）Legal aid (visitation) · " : "") + r.topic_label + (r.question ? ` · ${r.question}` : "")),
        el("td", {}, r.phone || ""), el("td", {}, call)));
    }
  }

  function renderStats(d) {
    const s = d.stats;
    const dl = $("stats");
    dl.textContent = "";
    const fmt = (v) => (v === null || v === undefined ? "—" : mmss(Math.round(v)));
    const rows = [
      ["来电 Calls", s.calls], ["已接听 Answered", s.answered], ["等待中位数 Wait p50", fmt(s.wait_p50)],
      ["等待95分位 Wait p95", fmt(s.wait_p95)], ["放弃 Abandoned", s.abandonment === null ? "—" : `${s.abandoned} (${Math.round(s.abandonment * 100)}%)`],
      ["平均通话 Talk time", fmt(s.talk_mean)], ["评分 Rating", s.rating_mean === null ? "—" : `${s.rating_mean.toFixed(1)} / 5 (${s.ratings})`],
    ];
    for (const [k, v] of rows) dl.append(el("dt", {}, k), el("dd", {}, String(v)));
  }

  async function refresh() {
    const r = await api("GET", "/desk/api/state");
    if (!r.ok) { fail(r); return; }
    state = r.desk;
    const ids = new Set(state.queue.map((q) => q.id));
    const fresh = [...ids].some((id) => !seen.has(id));
    if (fresh && state.status === "available" && !state.current) ring();
    if (!state.queue.length) document.title = document.title.replace(/^🔔 /, "");
    seen = ids;
    renderMe(state); renderQueue(state); renderCurrent(state); renderCallbacks(state); renderStats(state);
    root.dataset.ready = "1";
  }
  refresh();
  setInterval(refresh, 2000);
})();
