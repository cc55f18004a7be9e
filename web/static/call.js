// One RTCPeerConnection to the server: our mic and camera go up as two sendonly m-lines, then
// N recvonly audio+video pairs ("slots") come down. The server switches which participant a
// slot carries without renegotiating and tells us in a "slots" message (see docs/protocol.md).
(function () {
  function preferCodec(transceiver, kind, name) {
    if (!RTCRtpReceiver.getCapabilities || !transceiver.setCodecPreferences) return;
    const caps = RTCRtpReceiver.getCapabilities(kind);
    if (!caps) return;
    const wanted = caps.codecs.filter((c) => c.mimeType.toLowerCase() === `${kind}/${name}`);
    const rtx = caps.codecs.filter((c) => /rtx|red|ulpfec/i.test(c.mimeType));
    if (wanted.length) transceiver.setCodecPreferences(kind === "video" ? wanted.concat(rtx) : wanted);
  }

  // Opus with in-band FEC and DTX on every audio m-line (Chromium offers useinbandfec=1 but not
  // usedtx=1): what this page asks to receive; the server's answer asks the same of our mic.
  function opusFecDtx(sdp) {
    const pts = [...sdp.matchAll(/^a=rtpmap:(\d+) opus\/48000/gim)].map((m) => m[1]);
    for (const pt of pts) {
      sdp = sdp.replace(new RegExp(`^a=fmtp:${pt} (.*)$`, "gm"), (line, params) => {
        for (const p of ["useinbandfec=1", "usedtx=1"]) {
          if (!params.split(";").includes(p)) params += ";" + p;
        }
        return `a=fmtp:${pt} ${params}`;
      });
    }
    return sdp;
  }

  class Call {
    // iceServers: from the server's welcome (time-limited TURN credentials, signaling/turn.py);
    // [] when the server has no TURN server configured.
    constructor(localStream, slotCount, handlers, iceServers) {
      this.local = localStream;
      this.handlers = handlers; // {onSlotStream(index, stream), onState(state), onCandidate(c)}
      this.pc = new RTCPeerConnection({ bundlePolicy: "max-bundle", iceServers: iceServers || [] });
      const audio = localStream.getAudioTracks()[0];
      const video = localStream.getVideoTracks()[0];
      this.audioSender = this.pc.addTransceiver(audio || "audio", { direction: "sendonly", streams: [localStream] });
      this.videoSender = this.pc.addTransceiver(video || "video", { direction: "sendonly", streams: [localStream] });
      preferCodec(this.audioSender, "audio", "opus");
      preferCodec(this.videoSender, "video", "vp8");
      this.slots = [];
      for (let i = 0; i < slotCount; i++) {
        const a = this.pc.addTransceiver("audio", { direction: "recvonly" });
        const v = this.pc.addTransceiver("video", { direction: "recvonly" });
        preferCodec(a, "audio", "opus");
        preferCodec(v, "video", "vp8");
        const stream = new MediaStream([a.receiver.track, v.receiver.track]);
        this.slots.push({ index: i, audio: a, video: v, stream });
      }
      this.pc.addEventListener("connectionstatechange", () => handlers.onState(this.pc.connectionState));
      // Trickle ICE: the offer leaves as soon as it is set, without waiting for the browser to
      // gather (0.3-0.5 s after a network switch; seconds for a TURN allocation). The server
      // needs none of our candidates to connect (our checks reach its address and it learns
      // ours from them); the ones found later follow once its answer is here (its connection
      // exists then) through handlers.onCandidate.
      this.trickle = [];
      this.pc.addEventListener("icecandidate", (e) => {
        if (!e.candidate || !e.candidate.candidate) return;
        if (this.trickle) this.trickle.push(e.candidate); else handlers.onCandidate(e.candidate);
      });
      this.watchPath();
    }

    // A network switch (Wi-Fi → 4G) gives the phone a new address: this connection's path is
    // dead, but the browser says so late (ICE "disconnected" after ~2.5 s of silence, "failed"
    // much later, a socket on the old address only at its ping timeout). The page watches for
    // itself and asks handlers.onPathLost(reason) when: the browser's network type changes
    // (navigator.connection, phones), ICE has been "disconnected" for 1 s, or media was
    // arriving (≥ 10 packets/s) and then nothing at all came for 0.5 s (the handler's 1 s socket
    // probe then runs while the silence goes on; `lastMediaAt` tells it whether media came
    // back meanwhile: a loss burst, not a new address). The handler resolves
    // true when the path is gone (the watch stops: a new connection replaces this one) or false
    // when it is not (media merely stopped: the watch waits for media to flow again).
    watchPath() {
      const STALL_MS = 500, SILENT_MS = 300, DISCONNECTED_MS = 1000, TICK_MS = 200;
      const conn = navigator.connection;
      const typeAtStart = conn && conn.type;
      let lastPackets = -1, lastChange = performance.now(), flowing = false, busy = false;
      let disconnectedSince = null, asking = false;
      const lost = async (reason) => {
        if (asking || this.pathLost || this.pc.connectionState === "closed") return;
        asking = true;
        const askedAt = performance.now();
        const gone = this.handlers.onPathLost ? await this.handlers.onPathLost(reason) : true;
        asking = false;
        // Disarm only if nothing came while the probe was out (nobody sends): media that came
        // back keeps the watch armed, or a path lost right after this probe would go unseen.
        if (!(this.lastMediaAt > askedAt)) flowing = false;
        if (!gone) return;
        this.pathLost = reason;
        this.stopWatch();
      };
      const onType = () => { if (conn.type !== typeAtStart) lost("network_type"); };
      if (conn) conn.addEventListener("change", onType);
      const tick = async () => {
        const now = performance.now();
        const ice = this.pc.iceConnectionState;
        disconnectedSince = ice === "disconnected" ? (disconnectedSince || now) : null;
        if (disconnectedSince && now - disconnectedSince >= DISCONNECTED_MS) return lost("ice_disconnected");
        if (busy || !["connected", "completed", "disconnected"].includes(ice)) return;
        busy = true;
        try {
          let packets = 0;
          (await this.pc.getStats()).forEach((r) => {
            if (r.type === "transport") packets += r.packetsReceived || 0;
            else if (r.type === "inbound-rtp") packets += r.packetsReceived || 0;
          });
          const t = performance.now();
          if (packets !== lastPackets) {
            flowing = lastPackets >= 0 && (packets - lastPackets) * 1000 / Math.max(1, t - lastChange) >= 10;
            lastPackets = packets; lastChange = t; this.lastMediaAt = t;
          } else if (flowing && t - lastChange >= SILENT_MS) {
            // nothing at all for a while (a loss burst, a switch): the page's audio-only rule
            // leaves the pictures' freeze of this moment out (call.lastSilenceAt)
            this.lastSilenceAt = t;
            if (t - lastChange >= STALL_MS) lost("nothing_received");
          }
        } catch (e) { /* closed meanwhile */ } finally { busy = false; }
      };
      const timer = setInterval(tick, TICK_MS);
      this.stopWatch = () => { clearInterval(timer); if (conn) conn.removeEventListener("change", onType); };
    }

    async offer() {
      const offer = await this.pc.createOffer();
      await this.pc.setLocalDescription({ type: "offer", sdp: opusFecDtx(offer.sdp) });
      // no wait for gathering (a 150 ms grace for the host candidates cost 0.15 s of a network
      // switch and bought nothing measurable): what was found so far is in it, the rest trickles
      return this.pc.localDescription.sdp;
    }

    async answer(sdp) {
      await this.pc.setRemoteDescription({ type: "answer", sdp });
      const found = this.trickle || [];
      this.trickle = null;
      found.forEach((c) => this.handlers.onCandidate(c));
      this.slots.forEach((s) => this.handlers.onSlotStream(s.index, s.stream));
    }

    async capBitrate(maxBitrate) {
      const sender = this.videoSender.sender;
      const params = sender.getParameters();
      if (!params.encodings || !params.encodings.length) params.encodings = [{}];
      params.encodings[0].maxBitrate = maxBitrate;
      await sender.setParameters(params);
    }

    close() {
      if (this.stopWatch) this.stopWatch();
      try { this.pc.close(); } catch (e) { /* already closed */ }
    }
  }
  window.ParleyCall = Call;

  // The onCandidate handler every page gives a call: a candidate found after the offer left
  // (trickle ICE; a TURN relay's may take seconds) goes to the server on the page's current
  // socket, only while `current()` says this call is still the page's (a replaced call's
  // candidates would be refused as stale anyway).
  window.parleyTrickle = (socket, current) => (c) => {
    const s = socket();
    if (!current() || !s || !s.connected) return;
    s.timeout(5000).emitWithAck("candidate", {
      v: 1, candidate: c.candidate, mid: c.sdpMid || "0", ufrag: c.usernameFragment || "",
    }).catch(() => {});
  };
})();
