// The officer's live console (signaling/visits_officer.py). On the list (the grid): status, time
// left, both ends' link and keyframe thumbnails, refreshed live. On the watch page:
// a receive-only peer (no camera, no microphone: the officer never publishes) that shows and
// plays both ends of the visit once the officer presses Start (a click lets the sound play).
(function () {
  const $ = (id) => document.getElementById(id);
  const fmt = (s) => {
    s = Math.max(0, Math.ceil(s));
    return String(Math.floor(s / 60)).padStart(2, "0") + ":" + String(s % 60).padStart(2, "0");
  };

  const list = $("live-list");
  if (list) grid(list);

  // The grid (signaling/visits_officer.py): live.json every 2 s refreshes each visit's status,
  // time left and both ends' link; the countdown runs between two answers. With visit.observe,
  // one receive-only connection brings a keyframe of each end about every 2 s (thumbnails):
  // never sound, never full rate (that is the watch page, one visit at a time).
  function grid(list) {
    const g = window.parleyGrid = { at: performance.now(), calls: [], slots: [] };
    const site = list.dataset.site;
    const rows = () => Array.from(list.querySelectorAll("tr[data-session]"));
    setInterval(() => {
      const gone = (performance.now() - g.at) / 1000;
      list.querySelectorAll("td.remaining").forEach((td) => {
        if (td.dataset.remaining === "") return;
        const left = Number(td.dataset.remaining) - (td.dataset.running === "1" ? gone : 0);
        td.textContent = fmt(left);
      });
    }, 500);
    const figures = (q) => [
      "往返 RTT " + (q.rtt_ms == null ? "—" : q.rtt_ms + " ms"),
      "丢包 loss " + (q.loss_pct == null ? "—" : q.loss_pct + " %"),
      "码率 bitrate " + (q.kbps == null ? "—" : q.kbps + " kbit/s"),
      "最近媒体 last media " + (q.last_media_s == null ? "—" : q.last_media_s + " s"),
      "重传请求 NACKs " + (q.nacks == null ? "—" : q.nacks),
      "丢弃 holes " + (q.holes == null ? "—" : q.holes),
    ].join(" · ");
    const busy = () => document.activeElement && ["SELECT", "BUTTON"].includes(document.activeElement.tagName);
    async function poll() {
      let data;
      try {
        const r = await fetch(`/visits/sites/${encodeURIComponent(site)}/live.json`, { credentials: "same-origin" });
        data = await r.json();
        if (!r.ok || !data.ok) return;
      } catch (e) { return; }
      const shown = rows().map((tr) => tr.dataset.session).sort().join(" ");
      const now = data.visits.map((v) => v.session).sort().join(" ");
      if (shown !== now) { if (!busy()) location.reload(); return; }
      g.at = performance.now();
      for (const v of data.visits) {
        const tr = list.querySelector(`tr[data-session="${v.session}"]`);
        const st = tr.querySelector("td.live-status");
        st.className = "live-status " + v.status.code;
        st.textContent = v.status.label;
        const td = tr.querySelector("td.remaining");
        td.dataset.remaining = v.remaining == null ? "" : v.remaining;
        td.dataset.running = v.running ? "1" : "0";
        if (v.remaining != null) td.textContent = fmt(v.remaining);
        for (const end of v.ends) {
          const li = tr.querySelector(`li[data-end="${end.side}"]`);
          if (!li) continue;
          li.querySelector(".online").textContent = end.online ? "在线 online" : "离线 offline";
          const q = li.querySelector(".quality");
          q.className = "quality q-" + end.quality.rating;
          q.dataset.rating = end.quality.rating;
          q.textContent = end.quality.label;
          q.title = figures(end.quality);
        }
      }
      g.slots = data.grid || [];
      attachThumbs();
    }
    poll();
    setInterval(poll, 2000);

    const thumbs = () => Array.from(list.querySelectorAll("video.thumb"));
    if (list.dataset.pictures !== "1" || !thumbs().length || !window.ParleyCall) return;
    const status = (zh, en) => { $("grid-status").textContent = zh + " " + en; };
    // One connection per 8 visits (16 ends): a Chromium offer of 32 slots is over 64 KiB.
    const PER_PART = 16, PARTS = 2;
    const total = Math.min(PER_PART * PARTS, thumbs().length);
    status("正在连接画面…", "Connecting the pictures…");
    for (let part = 0; part * PER_PART < total; part++) connect(part, Math.min(PER_PART, total - part * PER_PART));

    async function connect(part, count) {
      const call = new window.ParleyCall(new MediaStream(), count, {
        onSlotStream: () => attachThumbs(),
        onCandidate: () => {},  // the server needs none (it learns our address from our checks)
        onState: (s) => { if (s === "failed") status("画面连接中断，请刷新", "Pictures lost; reload the page"); },
      }, []);
      const sdp = await call.offer();
      const r = await fetch(`/visits/sites/${encodeURIComponent(site)}/grid/offer`, {
        method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ csrf: list.dataset.csrf, part, sdp }),
      });
      const reply = await r.json().catch(() => ({}));
      if (!r.ok || !reply.ok) { status("画面不可用", "Pictures unavailable"); call.close(); return; }
      await call.answer(reply.sdp);
      g.calls[part] = call;
      status("", "");
      poll();
    }

    // Each slot the server names goes to the thumbnail of that end (video only, muted).
    function attachThumbs() {
      const wanted = new Map(g.slots.filter((s) => s.media).map((s) => [s.media, s]));
      for (const video of thumbs()) {
        const where = wanted.get(video.dataset.media);
        const call = where ? g.calls[where.part] : null;
        const slot = call ? call.slots[where.slot] : null;
        const track = slot ? slot.video.receiver.track : null;
        const current = video.srcObject && video.srcObject.getVideoTracks()[0];
        if (track && current !== track) video.srcObject = new MediaStream([track]);
        if (!track && video.srcObject) video.srcObject = null;
      }
    }
  }

  const watch = $("watch");
  if (!watch) return;
  const o = window.parleyOfficer = { view: null, slots: [], slotMessages: 0, call: null, deadline: null, frozen: null };
  const status = (zh, en) => { $("watch-status").textContent = zh + " " + en; };

  $("watch-start").onclick = () => {
    $("watch-start").disabled = true;
    status("正在连接…", "Connecting…");
    const ended = () => status("会见已结束", "The visit has ended");
    // on this page's server, or on the worker that took the visit over (follow.js)
    window.parleyFollow({ token: watch.dataset.token }, {
      welcome: async (welcome) => {
        o.view = welcome.session;
        if (o.call) o.call.close();
        const call = o.call = new window.ParleyCall(new MediaStream(), welcome.slots, {
          onSlotStream: () => attach(), onState: (s) => { if (s === "connected") status("监看中", "Watching"); },
          onCandidate: window.parleyTrickle(() => o.socket, () => o.call === call),
        }, welcome.iceServers);
        // a newer welcome (the socket connected again) may replace this call while its offer
        // is made or answered: the answer goes only to the call that made the offer
        const sdp = await call.offer();
        if (o.call !== call) { call.close(); return; }
        const messagesBefore = o.slotMessages;
        o.socket.emit("offer", { v: 1, sdp }, async (reply) => {
          if (o.call !== call) return;
          if (!reply || !reply.ok) { status("连接失败", "Could not connect"); return; }
          // the answer's map only if no "slots" message came since the offer (as app.js does):
          // a message that overtook the answer (a room publishing meanwhile) is as new or newer
          if (o.slotMessages === messagesBefore) o.slots = reply.slots || [];
          await call.answer(reply.sdp);
          attach();
        });
      },
      state: (view) => { o.view = view; render(); },
      slots: (msg) => { o.slotMessages += 1; o.slots = msg.slots || []; attach(); },
      error: (e) => { if (e && e.code === "ended") ended(); },
    }, (socket) => { o.socket = socket; }, ended);
  };
  $("watch-start").disabled = false;  // rendered disabled until this handler exists

  function names() {
    const out = {};
    for (const p of (o.view && o.view.participants) || []) out[p.id] = p.name;
    return out;
  }

  // One tile per slot that carries a party; the officer's own page never publishes.
  function attach() {
    if (!o.call) return;
    const tiles = $("watch-tiles");
    const who = names();
    for (const slot of o.call.slots) {
      const info = o.slots.find((s) => s.slot === slot.index) || {};
      let tile = tiles.querySelector(`[data-slot="${slot.index}"]`);
      if (!info.participant) { if (tile) tile.hidden = true; continue; }
      if (!tile) {
        tile = document.createElement("figure");
        tile.dataset.slot = slot.index;
        const video = document.createElement("video");
        video.autoplay = true; video.playsInline = true;
        const caption = document.createElement("figcaption");
        tile.append(video, caption);
        tiles.append(tile);
      }
      tile.hidden = false;
      tile.dataset.participant = info.participant;
      tile.querySelector("figcaption").textContent = who[info.participant] || info.participant;
      const video = tile.querySelector("video");
      if (video.srcObject !== slot.stream) video.srcObject = slot.stream;
    }
  }

  function render() {
    attach();
    const clock = o.view && o.view.session && o.view.session.clock;
    if (o.view && o.view.session.ended) { status("会见已结束", "The visit has ended"); o.deadline = null; }
    if (!clock) return;
    o.deadline = clock.running ? performance.now() + clock.remaining * 1000 : null;
    o.frozen = clock.remaining;
  }
  setInterval(() => {
    const el = $("watch-remaining");
    const left = o.deadline !== null ? (o.deadline - performance.now()) / 1000 : o.frozen;
    el.textContent = typeof left === "number" ? "剩余 Left " + fmt(left) : "";
  }, 500);
})();
