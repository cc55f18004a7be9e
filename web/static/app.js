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

  // One id per browser: the server asks before this link moves from one device to another
  // ("use here?"), and lets the same device (a reload, a second tab) replace itself silently.
  let device = localStorage.getItem("parley.device");
  if (!device) {
    device = Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, "0")).join("");
    localStorage.setItem("parley.device", device);
  }
  const socket = io("/parley", {
    auth: { token, device }, transports: ["websocket"], reconnectionDelay: 500, reconnectionDelayMax: 3000,
  });

  let screen = "intro";
  function show(name) {
    screen = name;
    for (const s of ["intro", "consent", "check", "call", "inuse", "end"]) $("screen-" + s).hidden = s !== name;
  }
  function status(text) {
    const el = $(screen + "-status");
    if (el) el.textContent = text || "";
  }

  function people(view) {  // none before the first view (a refused link, a second device)
    const list = (view && view.participants) || [];
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
    for (const tile of $("tiles").querySelectorAll(".tile.remote")) tile.classList.toggle("frozen", lost);
    showQuality();
  }

  // The one line at the top while the call is not up yet (connecting) or lost (reconnecting).
  function showLink() {
    const key = state.lost ? "reconnecting_banner" : state.joined && !state.mediaUp ? "connecting" : "";
    const banner = $("reconnect-banner");
    banner.hidden = !(key && state.joined && screen === "call");
    if (key) { banner.firstElementChild.dataset.t = key; banner.firstElementChild.textContent = i18n.t(key); }
  }

  // The end page: a title, a sentence (i18n keys: they follow the language toggle), and (when
  // there is a way back) the button to take it.
  function end(titleKey, textKey, again) {
    if (state.call) state.call.close();
    if (local) local.getTracks().forEach((t) => t.stop());
    socket.disconnect();
    $("end-title").dataset.t = titleKey;
    $("end-text").dataset.t = textKey || "";
    $("end-title").textContent = i18n.t(titleKey);
    $("end-text").textContent = textKey ? i18n.t(textKey) : "";
    $("btn-rejoin").hidden = !again;
    if (again) { $("btn-rejoin").dataset.t = again; $("btn-rejoin").textContent = i18n.t(again); }
    show("end");
    setLost(false);  // the page closed the socket itself: nothing to reconnect
  }
  $("btn-rejoin").onclick = () => location.reload();

  const errorKey = (code) => (i18n.has("err_" + code) ? "err_" + code : "err_unknown");
  const REFUSED_TITLE = { session_ended: "ended_title", participant_gone: "removed_title" };

  // Several servers (docs/scaling.md, "Routing: redirect"). A server that does not run this
  // mediation names the one that does ("redirect"): the page opens the same link there (every
  // server signs links with the same key). "#hops" counts such moves since the last welcome: at
  // most MAX_HOPS, then a clear error. A server that stops answering (it died): after
  // UNREACHABLE failed attempts the page opens the link on another server it was told about
  // (welcome "nodes"), which runs the mediation, redirects, or answers "session_moving" (nobody
  // has taken it over yet: wait, ask again). "#resume" goes back into the call by itself.
  // "#away" lists the servers the page left because they did not answer: a redirect back to one
  // of them (the others may not have noticed it died yet) counts as "session_moving", so that
  // the page never opens its link on a dead server (the browser's error page is a dead end).
  const MAX_HOPS = 3, UNREACHABLE = 2;
  // The fragment may carry more than the moves (the signing root, "#root="): only the moves'
  // own keys are added and removed, the rest goes along to the next server and stays.
  const MOVE_KEYS = ["hops", "resume", "away"];
  const notMoves = () => location.hash.slice(1).split("&")  // kept as written, not re-encoded
    .filter((part) => part && !MOVE_KEYS.includes(part.split("=")[0]));
  const moved = new URLSearchParams(location.hash.slice(1));
  let hops = Number.parseInt(moved.get("hops") || "0", 10) || 0;
  let resume = moved.get("resume") === "1";
  let away = (moved.get("away") || "").split(" ").filter(Boolean);
  let unreachable = 0;
  state.nodes = [];
  const base = (url) => url.replace(/\/+$/, "");
  function moveTo(url, left) {
    if (hops >= MAX_HOPS || typeof url !== "string" || !/^https?:\/\/[^/?#]+\/?$/.test(url)) {
      end("cannot_join_title", "err_no_server");
      return;
    }
    socket.io.opts.reconnection = false;
    status(i18n.t("err_redirect"));
    const gone = left ? away.concat([location.origin]) : away;
    const fragment = notMoves().concat(["hops=" + (hops + 1)]);
    if (state.joined || resume) fragment.push("resume=1");
    if (gone.length) fragment.push("away=" + encodeURIComponent(gone.join(" ")));
    location.replace(base(url) + "/j/" + encodeURIComponent(token) + "#" + fragment.join("&"));
  }
  function askAgain() {  // being taken over: ask this server again soon
    status(i18n.t("err_session_moving"));
    if (state.joined) setLost(true);
    setTimeout(() => { if (!socket.connected) socket.connect(); }, 500);
  }

  socket.on("connect_error", (err) => {
    const data = err && err.data;
    if (data && data.code === "redirect") {
      if (typeof data.url === "string" && away.includes(base(data.url))) askAgain();
      else moveTo(data.url, false);
    } else if (data && data.code === "session_moving") {
      askAgain();
    } else if (data && data.code === "in_use") {  // the same link is live on another device: ask first
      socket.io.opts.reconnection = false;
      show("inuse");
    } else if (data && data.code) {  // refused by the server: retrying will not help
      socket.io.opts.reconnection = false;
      end(REFUSED_TITLE[data.code] || "cannot_join_title", errorKey(data.code));
    } else {
      status(i18n.t("reconnecting"));
      if (state.joined) setLost(true);
      unreachable += 1;  // this server does not answer: after a few tries, another one
      if (unreachable >= UNREACHABLE && state.nodes.length && navigator.onLine !== false) {
        const others = state.nodes.filter((u) => !away.includes(base(u)));
        moveTo(others.length ? others[hops % others.length] : null, true);
      }
    }
  });
  socket.on("disconnect", (reason) => {
    if (reason === "io client disconnect") return;  // end(): the page closed it on purpose
    status(i18n.t("reconnecting"));
    setLost(true);
    // closed by the server without an error message (its session moved to another server):
    // socket.io does not reconnect by itself after that; ask again, it redirects
    if (reason === "io server disconnect" && socket.io.opts.reconnection !== false) {
      setTimeout(() => { if (!socket.connected) socket.connect(); }, 500);
    }
  });

  $("btn-use-here").onclick = () => {
    socket.auth = { token, device, takeover: true };
    socket.io.opts.reconnection = true;
    show("intro");
    socket.connect();
  };

  socket.on("welcome", async (msg) => {
    socket.auth = { token, device };  // taken over once; a later reconnect asks again if needed
    state.nodes = Array.isArray(msg.nodes) ? msg.nodes.filter((u) => typeof u === "string") : [];
    hops = 0; unreachable = 0; away = [];  // here now: the moves start again from this server
    const kept = notMoves().join("&");  // the moves are over; "#root=" and the like stay
    if (location.hash.slice(1) !== kept) {
      history.replaceState(null, "", location.pathname + location.search + (kept ? "#" + kept : ""));
    }
    state.me = msg.participant; state.role = msg.role; state.slotCount = msg.slots;
    state.view = msg.session; state.consents = msg.consents || { required: [], optional: [] };
    state.recordingAvailable = msg.recording === true;  // a recorder runs on this server
    state.iceServers = msg.iceServers || [];  // fresh TURN credentials with every welcome
    render();
    if (state.joined) await startMedia();  // a reconnect: offer again on a fresh connection
    else { $("btn-confirm").disabled = false; status(""); }
    if (resume && !state.joined) {  // moved to this server mid-call: back into the call
      resume = false;
      const given = myself(state.view).consents || {};
      if (!state.consents.required.some((t) => !given[t])) {
        await deviceCheck();
        if (local && !state.joined) $("btn-join").click();
      }
    }
  });
  socket.on("state", (view) => { state.view = view; render(); });
  // Every change of this phone's slot map comes as a "slots" message, in order; the offer's answer
  // carries a snapshot that can be older than a message that overtook it (the answer waits for
  // the ledger's barrier): ``slotMessages`` tells the offer whether one came meanwhile.
  let slotMessages = 0;
  socket.on("slots", (msg) => { slotMessages += 1; state.slots = msg.slots || []; renderTiles(); });
  socket.on("hint", async (hint) => {
    state.weakHint = hint.audio_only ? Date.now() : state.weakHint;
    if (hint.max_bitrate) {  // the caps applied to my camera, the last 20 (shown in traces)
      state.caps = (state.caps || []).slice(-19).concat([[Date.now(), hint.max_bitrate]]);
      if (state.call) await state.call.capBitrate(hint.max_bitrate).catch(() => {});
    }
    // the server sees ≥ 10 % video loss at this phone before retransmissions; measureQuality
    // switches only if the pictures still stand frozen after them (NACK/RTX repair 10 % loss)
  });
  socket.on("weak_network", (msg) => { state.weakPeers = msg.participants || []; renderTiles(); });

  // Weak network: the page goes audio-only by itself — it stops receiving video (the server
  // pauses it), stops sending its camera (the sender sends nothing; the camera stays on for
  // the self-view), and says so here and on everyone else's tile ("weak network: audio only").
  // Why (measureQuality): the server's hint (video loss at this phone ≥ 10 % over 3 reports)
  // with the received pictures frozen half the time over ~8 s ("video_broken"), or > 25 % loss of
  // what this page sends for 6 s ("uplink_loss"). Pressing "Video on" ends it.
  function goWeak(reason) {
    if (state.weak) return;
    state.weak = reason;
    state.audioOnly = true;
    applyWeak();
    render();
  }
  function applyWeak() {
    const call = state.call;
    if (call && state.weak) call.videoSender.sender.replaceTrack(null).catch(() => {});
    socket.emit("media", { v: 1, video_paused: state.audioOnly, weak_network: !!state.weak });
  }
  socket.on("error", (err) => {
    if (!err) return;
    socket.io.opts.reconnection = false;
    if (err.code === "replaced" && err.where === "another_device") {
      end("replaced_title", "replaced_device_text", "use_here");
    } else if (err.code === "replaced") end("replaced", "", "use_here");
    else if (err.code === "removed") end("removed_title", "err_participant_gone");
    else if (err.code === "ended") end("ended_title", "");
    else if (err.code === "left") end("left_title", "left_again", "rejoin");
    else socket.io.opts.reconnection = true;
  });

  // Camera and microphone; without a camera, the microphone alone. ``denied``: the browser
  // refused (the person can allow it and retry), as opposed to a device that is missing.
  async function getLocal() {
    const audio = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
    const video = { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 15, max: 20 } };
    let denied = false;
    try { return { stream: await navigator.mediaDevices.getUserMedia({ audio, video }), denied }; } catch (e) {
      denied = e && (e.name === "NotAllowedError" || e.name === "SecurityError");
    }
    try { return { stream: await navigator.mediaDevices.getUserMedia({ audio }), denied }; } catch (e) {
      return { stream: null, denied: denied || (e && e.name === "NotAllowedError") };
    }
  }

  function platformHelp() {
    const ua = navigator.userAgent || "";
    if (/iPhone|iPad|iPod/i.test(ua) || (/Macintosh/.test(ua) && navigator.maxTouchPoints > 1)) return "help_ios";
    return /Android/i.test(ua) ? "help_android" : "help_desktop";
  }

  async function startMedia() {
    if (state.call) state.call.close();
    const call = state.call = new ParleyCall(local, state.slotCount, {
      onSlotStream: () => renderTiles(),
      // a candidate found after the offer left (trickle ICE)
      onCandidate: window.parleyTrickle(() => socket, () => state.call === call),
      onState: (s) => {
        if (state.call !== call) return;  // an older connection, already replaced
        status(s === "connected" ? "" : s === "failed" ? i18n.t("reconnecting") : i18n.t("connecting"));
        if (s === "connected") { state.mediaUp = true; state.mediaUpAt = Date.now(); setLost(false); }
        else if (s === "failed" || s === "disconnected") setLost(true);
        if (s === "failed" && state.call === call && socket.connected) setTimeout(startMedia, 1000);
      },
      // The path may be dead (a network switch): media stopped arriving, or ICE is disconnected.
      // When the socket does not answer within 1 s either, it is on the old address too: it
      // reconnects at once (no backoff) and its welcome makes the new offer (same space, slots).
      // (A stall of both that would have passed by itself costs one reconnect: pathLosses.)
      onPathLost: async (reason) => {
        if (state.call !== call) return false;
        if (reason === "nothing_received" && socket.connected) {
          const alive = await socket.timeout(1000)
            .emitWithAck("media", { v: 1, video_paused: !!state.audioOnly }).catch(() => null);
          if (alive && state.call === call) return false;  // only the media stopped (nobody sends)
          // media came back while the probe was out: a loss burst, not a new address
          if (state.call === call && performance.now() - (call.lastMediaAt || 0) < 1000) return false;
        }
        if (state.call !== call) return false;
        state.pathLosses = (state.pathLosses || 0) + 1;
        setLost(true);
        if (socket.connected) { socket.disconnect(); socket.connect(); }
        return true;
      },
    }, state.iceServers);
    watchLevels();
    call.audioSender.sender.track && (call.audioSender.sender.track.enabled = state.micOn);
    state.mediaUp = false;
    showLink();
    status(i18n.t("connecting"));
    const sdp = await call.offer();
    const messagesBefore = slotMessages;
    const reply = await socket.timeout(15000).emitWithAck("offer", { v: 1, sdp }).catch(() => null);
    if (state.call !== call) return;
    if (!reply || !reply.ok) { status(i18n.error(reply ? reply.error.code : "timeout")); return; }
    // the answer's map only if no "slots" message came since the offer (one that did is as new or
    // newer), and before the answer is applied (one may come while it is)
    if (reply.slots && slotMessages === messagesBefore) state.slots = reply.slots;
    await call.answer(reply.sdp);
    if (reply.weak_network) state.weakPeers = reply.weak_network;
    if (state.audioOnly) applyWeak();
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
    $("btn-join").disabled = true;
    let denied = false;
    if (!local) ({ stream: local, denied } = await getLocal());
    $("cam-help").hidden = !denied;
    $("cam-help-platform").dataset.t = platformHelp();
    i18n.apply($("cam-help"));
    state.hasCamera = !!(local && local.getVideoTracks().length);
    $("audio-only-note").hidden = !local || state.hasCamera;
    if (!local) { status(denied ? "" : i18n.t("no_devices")); return; }
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

  $("btn-retry").onclick = () => {
    if (local) local.getTracks().forEach((t) => t.stop());
    local = null;
    deviceCheck();
  };

  $("btn-join").onclick = async () => {
    $("btn-join").disabled = true;
    $("self-view").srcObject = local;
    state.joined = true;
    show("call");
    await startMedia();
  };

  $("btn-mic").onclick = () => {
    if (state.hostMuted) return;  // only the mediator can unmute (the button says so)
    state.micOn = !state.micOn;
    local.getAudioTracks().forEach((t) => { t.enabled = state.micOn; });
    render();
  };
  $("btn-cam").onclick = () => {
    if (!state.hasCamera) return;
    state.camOn = !state.camOn;
    local.getVideoTracks().forEach((t) => { t.enabled = state.camOn; });
    render();
  };
  $("btn-audio-only").onclick = () => {
    state.audioOnly = !state.audioOnly;
    if (!state.audioOnly && state.weak) {  // video on again: the camera goes up again too
      state.weak = null; state.sendLossy = 0; state.frozenRecent = []; state.weakHint = null;
      state.mediaUpAt = Date.now();  // 10 s grace again: the person chose video
      const cam = local && local.getVideoTracks()[0];
      if (state.call && cam) state.call.videoSender.sender.replaceTrack(cam).catch(() => {});
    }
    applyWeak();
    render();
  };
  // Leaving asks first (a modal dialog: focus inside, Esc or "Stay" keeps you in the call);
  // whoever leaves can come back through the same link.
  $("btn-leave").onclick = () => {
    const host = ["mediator", "co_mediator"].includes(state.role);
    $("leave-text").dataset.t = host ? "leave_confirm_text_host" : "leave_confirm_text";
    i18n.apply($("leave-dialog"));
    $("leave-dialog").showModal();
  };
  $("leave-no").onclick = () => $("leave-dialog").close();
  $("leave-yes").onclick = async () => {
    $("leave-dialog").close();
    await socket.timeout(3000).emitWithAck("leave", { v: 1 }).catch(() => null);
    end("left_title", "left_again", "rejoin");
  };

  function command(cmd) {
    state.cmdSeq += 1;
    const cid = `${state.me}.${Date.now().toString(36)}.${state.cmdSeq}`;
    return socket.timeout(5000).emitWithAck("command", { v: 1, cid, cmd })
      .then((r) => { if (!r.ok) status(i18n.error(r.error.code)); return r; })
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
    // REC on every screen while recording runs, with who started it (R8, R15)
    $("rec").hidden = !session.recording;
    $("rec").textContent = session.recording
      ? i18n.t(session.recording_paused ? "rec_paused" : "rec_on") + (session.recording_by ? " · " + i18n.t("rec_by") + " " + session.recording_by : "")
      : "";
    $("my-name").textContent = me.name || "";
    $("my-role").textContent = i18n.role(me.role || state.role || "");
    followHostMute(me);
    $("btn-mic").textContent = i18n.t(state.hostMuted ? "muted_by_host_btn" : state.micOn ? "mute" : "unmute");
    $("btn-mic").disabled = !!state.hostMuted;
    $("btn-mic").setAttribute("aria-pressed", String(!state.micOn));
    $("btn-cam").textContent = i18n.t(state.camOn && state.hasCamera !== false ? "camera_off" : "camera_on");
    $("btn-cam").disabled = state.hasCamera === false;
    $("btn-cam").setAttribute("aria-pressed", String(!state.camOn));
    $("btn-audio-only").textContent = i18n.t(state.audioOnly ? "video_on" : "audio_only");
    $("waiting").hidden = me.space !== "waiting";
    // in the waiting room because the mediator dropped (safety hold), not because not yet admitted
    const waitingKey = session.held ? "held_text" : "waiting_text";
    $("waiting-text").dataset.t = waitingKey;
    $("waiting-text").textContent = i18n.t(waitingKey);
    $("space-label").textContent = spaceLine(view, me);
    if (session.ended && state.joined) end("ended_title", "");
    for (const hook of state.hooks) hook(state);
    renderTiles();
    showQuality();
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

  // The mediator muted me: my microphone goes off and stays off until they unmute me; a notice
  // says so (and when they unmute, that I may speak again).
  let unmuteNoticeTimer = null;
  function followHostMute(me) {
    const muted = !!me.muted;
    if (me.id === undefined || muted === !!state.hostMuted) return;
    state.hostMuted = muted;
    const notice = $("host-notice");
    clearTimeout(unmuteNoticeTimer);
    if (muted) {
      state.micOn = false;
      if (local) local.getAudioTracks().forEach((t) => { t.enabled = false; });
    } else {
      unmuteNoticeTimer = setTimeout(() => { notice.hidden = true; }, 8000);
    }
    notice.dataset.t = muted ? "muted_by_host" : "unmuted_by_host";
    notice.textContent = i18n.t(notice.dataset.t);
    notice.hidden = false;
  }

  // Who is speaking (WebAudio level of each tile's audio), and whose camera sends nothing or
  // black frames (an 8x8 sample of the picture): the tile then shows the person's card.
  let audioCtx = null;
  const meters = new Map();  // MediaStream -> {analyser, buf}
  function level(stream) {
    const track = stream && stream.getAudioTracks()[0];
    if (!track || track.readyState !== "live" || !window.AudioContext) return 0;
    let m = meters.get(stream);
    if (!m) {
      audioCtx = audioCtx || new AudioContext();
      const analyser = audioCtx.createAnalyser(); analyser.fftSize = 512;
      audioCtx.createMediaStreamSource(new MediaStream([track])).connect(analyser);
      m = { analyser, buf: new Float32Array(analyser.fftSize) };
      meters.set(stream, m);
    }
    if (audioCtx.state === "suspended") audioCtx.resume().catch(() => {});
    m.analyser.getFloatTimeDomainData(m.buf);
    let sum = 0; for (const x of m.buf) sum += x * x;
    return Math.sqrt(sum / m.buf.length);
  }
  const sampler = document.createElement("canvas");
  sampler.width = 8; sampler.height = 8;
  function pictureDark(video) {
    if (!video.videoWidth || video.readyState < 2) return true;
    const g = sampler.getContext("2d", { willReadFrequently: true });
    g.drawImage(video, 0, 0, 8, 8);
    const px = g.getImageData(0, 0, 8, 8).data;
    let max = 0; for (let i = 0; i < px.length; i += 4) max = Math.max(max, px[i], px[i + 1], px[i + 2]);
    return max < 16;
  }
  function watchLevels() {
    if (state.levelTimer) return;
    state.levelTimer = setInterval(() => {
      for (const tile of $("tiles").querySelectorAll(".tile")) {
        if (tile.hidden) continue;
        const video = tile.querySelector("video");
        const self = tile.id === "self-tile";
        const loud = (self ? state.micOn && !state.hostMuted : true) && level(video.srcObject) > 0.02;
        tile.classList.toggle("speaking", loud);
        if (!self) {  // two dark samples in a row: the camera is off (or there is none)
          const dark = !state.lost && pictureDark(video);
          tile.dataset.dark = dark ? String(Number(tile.dataset.dark || 0) + 1) : "0";
          setCameraOff(tile, Number(tile.dataset.dark) >= 2);
        }
      }
    }, 250);
  }
  function setCameraOff(tile, off) {
    if (tile.classList.contains("camera-off") === off) return;
    tile.classList.toggle("camera-off", off);
    renderTiles();
  }

  // The name card of a tile: name, role, and icons for a muted microphone and a camera that is off.
  function card(tile, person, { muted, cameraOff, you }) {
    const name = person.name || "";
    tile.querySelector(".tile-name").textContent =
      `${name}${you ? i18n.t("you") : ""} · ${i18n.role(person.role || "")}`;
    tile.querySelector(".avatar-initial").textContent = name.slice(0, 1);
    const icons = tile.querySelector(".tile-icons");
    icons.textContent = "";
    for (const [on, key, glyph] of [[muted, "tile_muted", "\u{1F507}"], [cameraOff, "tile_camera_off", "\u{1F4F7}\u{20E0}"]]) {
      if (!on) continue;
      const icon = document.createElement("span");
      icon.className = "tile-icon " + key.replace("tile_", "");
      icon.setAttribute("role", "img");
      icon.setAttribute("aria-label", i18n.t(key));
      icon.title = i18n.t(key);
      icon.textContent = glyph;
      icons.appendChild(icon);
    }
    tile.classList.toggle("camera-off", !!cameraOff);
    tile.classList.toggle("muted", !!muted);
    let weak = tile.querySelector(".tile-weak");
    if (!weak) {
      weak = document.createElement("span");
      weak.className = "tile-weak"; weak.setAttribute("role", "status");
      tile.appendChild(weak);
    }
    const isWeak = you ? !!state.weak : (state.weakPeers || []).includes(person.id);
    weak.hidden = !isWeak;
    weak.textContent = isWeak ? i18n.t("weak_audio_only") : "";
    tile.classList.toggle("weak-network", isWeak);
  }

  function renderSelf() {
    const tile = $("self-tile");
    const me = myself(state.view);
    card(tile, { id: me.id, name: me.name, role: me.role || state.role }, {
      muted: !state.micOn || !!state.hostMuted,
      cameraOff: !state.camOn || !state.hasCamera,
      you: true,
    });
  }

  // My own network, from my connection's statistics: the round trip of the selected candidate
  // pair and the loss the server reports for what I send (remote-inbound-rtp); the server's
  // audio-only hint counts as poor for a while.
  async function measureQuality() {
    const pc = state.call && state.call.pc;
    if (!pc || !state.mediaUp || state.lost) { state.quality = null; showQuality(); return; }
    let rtt = null, loss = 0, n = 0, pairId = null;
    const reports = await pc.getStats();
    reports.forEach((r) => {
      if (r.type === "transport" && r.selectedCandidatePairId) pairId = r.selectedCandidatePairId;
      if (r.type === "remote-inbound-rtp" && typeof r.fractionLost === "number") { loss += r.fractionLost; n += 1; }
    });
    const pair = pairId && reports.get(pairId);
    if (pair && typeof pair.currentRoundTripTime === "number") rtt = pair.currentRoundTripTime;
    loss = n ? loss / n : 0;
    const uplink = pair && pair.availableOutgoingBitrate;
    state.uplinkBps = typeof uplink === "number" ? uplink : null;  // shown in traces, not a rule
    state.sendLoss = loss;
    // What I send breaks: once the call has run 10 s, the server reports > 25 % loss of it
    // (before retransmission: NACK/RTX repair 10 %) in 3 measurements in a row (6 s). The
    // browser's send estimate is no rule: its loss-based control sinks to ~30 kbit/s at 10 %
    // random loss while the lowered video still arrives.
    const lossy = loss > SEND_LOSS_WEAK && Date.now() - (state.mediaUpAt || Date.now()) > 10000;
    state.sendLossy = lossy ? (state.sendLossy || 0) + 1 : 0;
    if (state.sendLossy >= 3) goWeak("uplink_loss");
    // What I see breaks: the server says my downlink loses video (its audio-only hint, loss
    // before retransmission), and the pictures I receive stood frozen at least half the time
    // over the last 4 measurements with video (~8 s), after NACK/RTX did what they could.
    // (Measured: 0.5-0.9 of the time under a 300 kbit/s cap with two pictures, 0.2-0.4 under
    // 10 % random loss; docs/benchmarks.md "Real networks".)
    const frozen = frozenShare(reports, pc);
    state.videoFrozen = frozen;
    // a moment when nothing at all arrived (a loss burst, a switch) is not a link too thin for
    // video, and audio-only would not help: its freeze, and the next measurement's (Chromium
    // counts a freeze when it ends), are left out
    const silent = performance.now() - (state.call.lastSilenceAt || -1e9) < 4500;
    if (frozen !== null && !silent) state.frozenRecent = (state.frozenRecent || []).slice(1 - FROZEN_OVER).concat([frozen]);
    const recent = state.frozenRecent || [];
    const meanFrozen = recent.length === FROZEN_OVER ? recent.reduce((a, b) => a + b, 0) / FROZEN_OVER : 0;
    const hinted = state.weakHint && Date.now() - state.weakHint < 30000;
    if (meanFrozen >= FROZEN_WEAK && hinted) goWeak("video_broken");
    const weak = state.weakHint && Date.now() - state.weakHint < 20000;
    state.quality = weak || (rtt !== null && rtt > 0.6) || loss > 0.1 ? "poor"
      : (rtt !== null && rtt > 0.3) || loss > 0.03 ? "fair" : "good";
    showQuality();
  }
  const SEND_LOSS_WEAK = 0.25, FROZEN_WEAK = 0.5, FROZEN_OVER = 4, LONG_FREEZE_S = 0.6;

  // The share of the time since the last measurement that the remote pictures stood still for
  // long, as the person saw them (mean over the video streams that packets arrived on: a
  // publisher in audio-only, or video paused for me, sends none and does not count). Chromium
  // counts a freeze (a frame gap > 3x the average interval, or + 150 ms) when it ends
  // (freezeCount, totalFreezesDuration); freezes that last ≥ 0.6 s on average count; a stream
  // that decoded nothing at all stood still throughout. null: no video arrives.
  function frozenShare(reports, pc) {
    const now = performance.now();
    const streams = {};
    reports.forEach((r) => {
      if (r.type !== "inbound-rtp" || r.kind !== "video") return;
      streams[r.id] = {
        packets: r.packetsReceived || 0, frames: r.framesDecoded || 0,
        frozen: r.totalFreezesDuration || 0, freezes: r.freezeCount || 0,
      };
    });
    const prev = state.seen && state.seen.pc === pc ? state.seen : null;
    state.seen = { pc, at: now, streams };
    if (!prev) { state.frozenRecent = []; return null; }  // a new connection starts afresh
    const dt = Math.max(0.5, (now - prev.at) / 1000);
    let sum = 0, count = 0;
    state.freezeMean = 0;
    for (const [id, s] of Object.entries(streams)) {
      const p = prev.streams[id];
      if (!p) continue;
      // time already counted as frozen because nothing decoded: not again when the freeze ends
      s.counted = s.frames === p.frames ? (p.counted || 0) + dt : 0;
      if (s.packets - p.packets < 10) continue;
      // only long freezes: under 10 % random loss a NACK round trip makes many short ones
      // (0.2-0.5 s, the picture goes on); a link too thin for video makes the picture stand
      // for seconds, waiting for keyframes
      const ended = Math.max(0, s.frozen - p.frozen - (p.counted || 0));
      const mean = s.freezes > p.freezes ? (s.frozen - p.frozen) / (s.freezes - p.freezes) : 0;
      state.freezeMean = Math.max(state.freezeMean || 0, mean);  // shown in traces
      const long = mean >= LONG_FREEZE_S;
      sum += s.frames === p.frames ? 1 : long ? Math.min(1, ended / dt) : 0;
      count += 1;
    }
    return count ? sum / count : null;
  }
  function showQuality() {
    const el = $("net-quality");
    const q = state.weak ? "poor" : state.quality;
    el.hidden = !q || screen !== "call";
    if (!q) return;
    el.className = "net net-" + q;
    el.dataset.quality = q;
    el.dataset.weak = state.weak ? "1" : "";
    el.textContent = i18n.t(state.weak ? "weak_audio_only" : "net_" + q);
  }
  setInterval(() => { measureQuality().catch(() => {}); }, 2000);

  function renderTiles() {
    const call = state.call;
    const tiles = $("tiles");
    renderSelf();
    if (!call) return;
    const known = {};
    for (const p of people(state.view)) known[p.id] = p;
    for (const slot of call.slots) {
      const info = state.slots.find((s) => s.slot === slot.index) || {};
      let tile = tiles.querySelector(`[data-slot="${slot.index}"]`);
      if (!tile) {
        tile = document.createElement("figure");
        tile.className = "tile"; tile.dataset.slot = String(slot.index);
        tile.classList.add("remote");
        const v = document.createElement("video");
        v.autoplay = true; v.playsInline = true; v.srcObject = slot.stream;
        const avatar = $("self-tile").querySelector(".avatar").cloneNode(true);
        const cap = $("self-tile").querySelector("figcaption").cloneNode(true);
        const frozen = document.createElement("span");
        frozen.className = "tile-state"; frozen.dataset.t = "video_frozen"; frozen.textContent = i18n.t("video_frozen");
        tile.append(v, avatar, cap, frozen);
        tiles.appendChild(tile);
      }
      // A reconnect or a new offer makes a new connection: play its tracks, not the ended ones.
      const video = tile.querySelector("video");
      if (video.srcObject !== slot.stream) video.srcObject = slot.stream;
      tile.classList.toggle("frozen", !!state.lost);
      tile.hidden = !info.participant;
      tile.dataset.participant = info.participant || "";
      const person = known[info.participant] || {};
      card(tile, person, { muted: !!person.muted, cameraOff: tile.dataset.dark >= 2 });
    }
  }
})();
