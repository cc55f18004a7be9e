// The officer's live console (signaling/visits_officer.py). On the list: the remaining times
// count down and the list refreshes itself while nobody is choosing a reason. On the watch page:
// a receive-only peer (no camera, no microphone: the officer never publishes) that shows and
// plays both ends of the visit once the officer presses Start (a click lets the sound play).
(function () {
  const $ = (id) => document.getElementById(id);
  const fmt = (s) => {
    s = Math.max(0, Math.ceil(s));
    return String(Math.floor(s / 60)).padStart(2, "0") + ":" + String(s % 60).padStart(2, "0");
  };

  const list = $("live-list");
  if (list) {
    const started = performance.now();
    setInterval(() => {
      const gone = (performance.now() - started) / 1000;
      list.querySelectorAll("td.remaining").forEach((td) => {
        if (td.dataset.remaining === "") return;
        const left = Number(td.dataset.remaining) - (td.dataset.running === "1" ? gone : 0);
        td.textContent = fmt(left);
      });
    }, 500);
    setInterval(() => {
      const busy = document.activeElement && ["SELECT", "BUTTON"].includes(document.activeElement.tagName);
      if (!busy) location.reload();
    }, 10000);
  }

  const watch = $("watch");
  if (!watch) return;
  const o = window.parleyOfficer = { view: null, slots: [], call: null, deadline: null, frozen: null };
  const status = (zh, en) => { $("watch-status").textContent = zh + " " + en; };

  $("watch-start").onclick = () => {
    $("watch-start").disabled = true;
    status("正在连接…", "Connecting…");
    const socket = o.socket = io("/parley", { auth: { token: watch.dataset.token }, transports: ["websocket"] });
    socket.on("welcome", async (welcome) => {
      o.view = welcome.session;
      if (o.call) o.call.close();
      o.call = new window.ParleyCall(new MediaStream(), welcome.slots, {
        onSlotStream: () => attach(), onState: (s) => { if (s === "connected") status("监看中", "Watching"); },
      }, welcome.iceServers);
      const sdp = await o.call.offer();
      socket.emit("offer", { v: 1, sdp }, async (reply) => {
        if (!reply || !reply.ok) { status("连接失败", "Could not connect"); return; }
        await o.call.answer(reply.sdp);
        o.slots = reply.slots || [];
        attach();
      });
    });
    socket.on("state", (view) => { o.view = view; render(); });
    socket.on("slots", (msg) => { o.slots = msg.slots || []; attach(); });
    socket.on("error", (e) => { if (e && e.code === "ended") status("会见已结束", "The visit has ended"); });
  };

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
