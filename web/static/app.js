// The party / mediator page: connect with the invitation token, show the waiting room or the
// call, keep reconnecting by itself, and (for hosts) admit people from the waiting room.
(function () {
  const $ = (id) => document.getElementById(id);
  const token = decodeURIComponent(location.pathname.split("/").pop());
  const state = window.parley = {
    me: null, role: null, view: null, slotCount: 0, slots: [], call: null, joined: false,
    micOn: true, camOn: true, audioOnly: false, cmdSeq: 0,
  };
  let local = null;

  i18n.apply();
  $("lang").onclick = () => { i18n.toggle(); render(); };

  const socket = io("/parley", {
    auth: { token }, transports: ["websocket"], reconnectionDelay: 500, reconnectionDelayMax: 3000,
  });

  let screen = "intro";
  function show(name) {
    screen = name;
    for (const s of ["intro", "consent", "check", "call", "end"]) $("screen-" + s).hidden = s !== name;
  }
  function status(text) {
    const el = $(screen + "-status");
    if (el) el.textContent = text || "";
  }

  function people(view) {
    const list = view && (view.participants || []);
    return Array.isArray(list) ? list : Object.values(list);
  }
  function myself(view) {
    return (view && view.you) || people(view).find((p) => p.id === state.me) || {};
  }

  // Connection lost after joining: a banner that cannot be missed, and the remote tiles marked
  // as frozen, until the current media connection is up again (reconnect or new offer).
  function setLost(lost) {
    state.lost = lost;
    showLink();
    for (const tile of $("tiles").querySelectorAll(".tile")) tile.classList.toggle("frozen", lost);
  }

  // The one line at the top while the call is not up yet (connecting) or lost (reconnecting).
  function showLink() {
    const key = state.lost ? "reconnecting_banner" : state.joined && !state.mediaUp ? "connecting" : "";
    const banner = $("reconnect-banner");
    banner.hidden = !(key && state.joined && screen === "call");
    if (key) { banner.firstElementChild.dataset.t = key; banner.firstElementChild.textContent = i18n.t(key); }
  }

  function end(titleKey, text) {
    if (state.call) state.call.close();
    if (local) local.getTracks().forEach((t) => t.stop());
    socket.disconnect();
    $("end-title").textContent = i18n.t(titleKey);
    $("end-text").textContent = text || "";
    show("end");
    setLost(false);  // the page closed the socket itself: nothing to reconnect
  }

  socket.on("connect_error", (err) => {
    const data = err && err.data;
    if (data && data.code) {  // refused by the server: retrying will not help
      socket.io.opts.reconnection = false;
      end("error", `${data.message} (${data.code})`);
      $("end-title").textContent = i18n.t("error");
    } else {
      status(i18n.t("reconnecting"));
      if (state.joined) setLost(true);
    }
  });
  socket.on("disconnect", (reason) => {
    if (reason === "io client disconnect") return;  // end(): the page closed it on purpose
    status(i18n.t("reconnecting"));
    setLost(true);
  });

  socket.on("welcome", async (msg) => {
    state.me = msg.participant; state.role = msg.role; state.slotCount = msg.slots;
    state.view = msg.session; state.consents = msg.consents || { required: [], optional: [] };
    state.recordingAvailable = msg.recording === true;  // a recorder runs on this server
    state.iceServers = msg.iceServers || [];  // fresh TURN credentials with every welcome
    render();
    if (state.joined) await startMedia();  // a reconnect: offer again on a fresh connection
    else { $("btn-confirm").disabled = false; status(""); }
  });
  socket.on("state", (view) => { state.view = view; render(); });
  socket.on("slots", (msg) => { state.slots = msg.slots || []; renderTiles(); });
  socket.on("hint", async (hint) => {
    if (hint.max_bitrate && state.call) await state.call.capBitrate(hint.max_bitrate).catch(() => {});
    if (hint.audio_only && !state.audioOnly) status(i18n.t("audio_only_hint"));
  });
  socket.on("error", (err) => {
    if (!err) return;
    socket.io.opts.reconnection = false;
    if (err.code === "replaced") end("error", i18n.t("replaced"));
    else if (err.code === "removed") end("removed_title", i18n.t("left_text"));
    else if (err.code === "ended") end("ended_title", "");
    else if (err.code === "left") end("left_title", i18n.t("left_text"));
    else socket.io.opts.reconnection = true;
  });

  async function getLocal() {
    const audio = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
    const video = { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 15, max: 20 } };
    try { return await navigator.mediaDevices.getUserMedia({ audio, video }); } catch (e) { /* try less */ }
    try { return await navigator.mediaDevices.getUserMedia({ audio }); } catch (e) { return null; }
  }

  async function startMedia() {
    if (state.call) state.call.close();
    const call = state.call = new ParleyCall(local, state.slotCount, {
      onSlotStream: () => renderTiles(),
      onState: (s) => {
        if (state.call !== call) return;  // an older connection, already replaced
        status(s === "connected" ? "" : s === "failed" ? i18n.t("reconnecting") : i18n.t("connecting"));
        if (s === "connected") { state.mediaUp = true; setLost(false); }
        else if (s === "failed" || s === "disconnected") setLost(true);
        if (s === "failed" && state.call === call && socket.connected) setTimeout(startMedia, 1000);
      },
    }, state.iceServers);
    call.audioSender.sender.track && (call.audioSender.sender.track.enabled = state.micOn);
    state.mediaUp = false;
    showLink();
    status(i18n.t("connecting"));
    const sdp = await call.offer();
    const reply = await socket.timeout(15000).emitWithAck("offer", { v: 1, sdp }).catch(() => null);
    if (state.call !== call) return;
    if (!reply || !reply.ok) { status(i18n.t("error") + (reply ? reply.error.message : "timeout")); return; }
    await call.answer(reply.sdp);
    if (reply.slots) state.slots = reply.slots;
    if (state.audioOnly) socket.emit("media", { v: 1, video_paused: true });
    renderTiles();
  }

  // Arrival: confirm the name, give the consents the session needs (stored in the ledger),
  // check camera and microphone, then join (the waiting room, unless you host the session).
  $("btn-confirm").onclick = () => {
    const given = myself(state.view).consents || {};
    const pending = state.consents.required.filter((t) => !given[t]);
    const optional = state.consents.optional.filter((t) => !(t in given));
    if (pending.length || optional.length) showConsents(pending, optional); else deviceCheck();
  };

  function showConsents(required, optional) {
    const list = $("consent-list");
    list.textContent = "";
    for (const [topic, must] of required.map((t) => [t, true]).concat(optional.map((t) => [t, false]))) {
      const label = document.createElement("label");
      label.className = "consent";
      const box = document.createElement("input");
      box.type = "checkbox"; box.dataset.topic = topic; box.dataset.required = must ? "1" : "";
      box.onchange = () => {
        $("btn-consent").disabled = [...list.querySelectorAll("input[data-required='1']")].some((b) => !b.checked);
      };
      const text = document.createElement("span");
      text.dataset.t = "consent_" + topic;
      label.append(box, text);
      list.appendChild(label);
    }
    $("btn-consent").disabled = required.length > 0;
    show("consent");
    i18n.apply();
  }

  $("btn-consent").onclick = async () => {
    $("btn-consent").disabled = true;
    for (const box of $("consent-list").querySelectorAll("input")) {
      const r = await command({ type: "record_consent", topic: box.dataset.topic, given: box.checked });
      if (!r || (!r.ok && r.error.code !== "conflict")) { $("btn-consent").disabled = false; return; }
    }
    deviceCheck();
  };

  async function deviceCheck() {
    show("check");
    status(i18n.t("connecting"));
    local = local || await getLocal();
    if (!local) { status(i18n.t("no_devices")); return; }
    $("preview").srcObject = local;
    $("check-network").textContent = socket.connected ? i18n.t("network_ok") : i18n.t("reconnecting");
    meter(local);
    status("");
    $("btn-join").disabled = false;
  }

  function meter(stream) {
    if (!stream.getAudioTracks().length || !window.AudioContext) return;
    const ctx = new AudioContext();
    const an = ctx.createAnalyser(); an.fftSize = 512;
    ctx.createMediaStreamSource(stream).connect(an);
    const buf = new Float32Array(an.fftSize);
    const tick = () => {
      if (screen !== "check") { ctx.close(); return; }
      an.getFloatTimeDomainData(buf);
      let peak = 0; for (const x of buf) peak = Math.max(peak, Math.abs(x));
      $("mic-level").style.width = Math.min(100, Math.round(peak * 200)) + "%";
      requestAnimationFrame(tick);
    };
    tick();
  }

  $("btn-join").onclick = async () => {
    $("btn-join").disabled = true;
    $("self-view").srcObject = local;
    state.joined = true;
    show("call");
    await startMedia();
  };

  $("btn-mic").onclick = () => {
    state.micOn = !state.micOn;
    local.getAudioTracks().forEach((t) => { t.enabled = state.micOn; });
    render();
  };
  $("btn-cam").onclick = () => {
    state.camOn = !state.camOn;
    local.getVideoTracks().forEach((t) => { t.enabled = state.camOn; });
    render();
  };
  $("btn-audio-only").onclick = () => {
    state.audioOnly = !state.audioOnly;
    socket.emit("media", { v: 1, video_paused: state.audioOnly });
    render();
  };
  $("btn-leave").onclick = async () => {
    await socket.timeout(3000).emitWithAck("leave", { v: 1 }).catch(() => null);
    end("left_title", i18n.t("left_text"));
  };

  function command(cmd) {
    state.cmdSeq += 1;
    const cid = `${state.me}.${Date.now().toString(36)}.${state.cmdSeq}`;
    return socket.timeout(5000).emitWithAck("command", { v: 1, cid, cmd })
      .then((r) => { if (!r.ok) status(i18n.t("error") + r.error.message); return r; })
      .catch(() => status(i18n.t("reconnecting")));
  }
  state.command = command;
  state.socket = socket;
  state.render = () => render();

  function render() {
    i18n.apply();
    const view = state.view || {};
    const me = myself(view);
    const session = view.session || view;
    $("session-title").textContent = session.title || "";
    $("my-name").textContent = me.name || "";
    $("my-role").textContent = i18n.role(me.role || state.role || "");
    $("btn-mic").textContent = i18n.t(state.micOn ? "mute" : "unmute");
    $("btn-cam").textContent = i18n.t(state.camOn ? "camera_off" : "camera_on");
    $("btn-audio-only").textContent = i18n.t(state.audioOnly ? "video_on" : "audio_only");
    $("waiting").hidden = me.space !== "waiting";
    $("space-label").textContent = spaceLine(view, me);
    if (session.ended && state.joined) end("ended_title", "");
    for (const hook of state.hooks) hook(state);
    renderTiles();
  }

  // Where I am, and in a private room with whom (a party's view lists only the people in its own
  // room, without their space; a host's lists everyone, with it).
  function spaceLine(view, me) {
    if (!me.space || me.space === "waiting") return "";
    const where = i18n.space(me.space);
    if (!me.space.startsWith("caucus:")) return where;
    const names = people(view)
      .filter((p) => p.id !== me.id && p.connected !== false && (p.space === undefined || p.space === me.space))
      .map((p) => p.name);
    return `${where} · ${names.length ? i18n.t("with_whom") + names.join(i18n.t("list_sep")) : i18n.t("only_you")}`;
  }

  function button(text, action, onclick) {
    const b = document.createElement("button");
    b.type = "button"; b.className = "small"; b.textContent = text; b.dataset.action = action;
    b.onclick = onclick;
    return b;
  }
  state.button = button;
  state.people = () => people(state.view);
  state.myself = () => myself(state.view);
  state.hooks = [];

  function renderTiles() {
    const call = state.call;
    const tiles = $("tiles");
    if (!call) return;
    const names = {};
    for (const p of people(state.view)) names[p.id] = p.name;
    for (const slot of call.slots) {
      const info = state.slots.find((s) => s.slot === slot.index) || {};
      let tile = tiles.querySelector(`[data-slot="${slot.index}"]`);
      if (!tile) {
        tile = document.createElement("figure");
        tile.className = "tile"; tile.dataset.slot = String(slot.index);
        const v = document.createElement("video");
        v.autoplay = true; v.playsInline = true; v.srcObject = slot.stream;
        const cap = document.createElement("figcaption");
        const frozen = document.createElement("span");
        frozen.className = "tile-state"; frozen.dataset.t = "video_frozen"; frozen.textContent = i18n.t("video_frozen");
        tile.append(v, cap, frozen);
        tiles.appendChild(tile);
      }
      // A reconnect or a new offer makes a new connection: play its tracks, not the ended ones.
      const video = tile.querySelector("video");
      if (video.srcObject !== slot.stream) video.srcObject = slot.stream;
      tile.classList.toggle("frozen", !!state.lost);
      tile.hidden = !info.participant;
      tile.dataset.participant = info.participant || "";
      tile.querySelector("figcaption").textContent = names[info.participant] || "";
    }
  }
})();
