// A session's socket that follows its session between the servers of one site
// (docs/scaling.md, "Workers"). When the worker serving a visit stops, another takes the visit
// over; the page's own server then names it ("redirect") and the socket is opened there, the
// page staying where it is (its Content-Security-Policy names the other workers): at most
// MAX_HOPS moves between two welcomes, then it starts again on its own server a second later.
// It asks again while the session is being taken over ("session_moving"), and after its server
// closed the socket without an error (the session moved: socket.io does not reconnect by
// itself then). The terminal's kiosk and the officer's watch page use it; the phone's call page
// moves the whole page instead (app.js), since its link names the server.
(function () {
  const MAX_HOPS = 3, AGAIN_MS = 500;
  const ORIGIN = /^https?:\/\/[^/?#]+\/?$/;

  // auth: the socket's auth (token, device); on: {event: handler} for every socket opened;
  // onSocket(socket): the socket now in use; onEnded(): the session ended before we got in.
  window.parleyFollow = function (auth, on, onSocket, onEnded) {
    let current = null, hops = 0;
    function open(base) {
      if (current) { current.off(); current.disconnect(); }
      const socket = current = io(base + "/parley", { auth, transports: ["websocket"] });
      const again = (ms) => setTimeout(() => {
        if (current === socket && !socket.connected) socket.connect();
      }, ms);
      socket.on("welcome", () => { hops = 0; });
      for (const [event, handler] of Object.entries(on)) socket.on(event, handler);
      socket.on("connect_error", (err) => {
        const data = (err && err.data) || {};
        if (data.code === "session_ended") onEnded();
        else if (data.code === "redirect" && ORIGIN.test(data.url || "") && hops < MAX_HOPS) {
          hops += 1;
          open(data.url.replace(/\/+$/, ""));
        } else if (data.code === "redirect") {  // moved too often: start again here, in a second
          setTimeout(() => { if (current === socket) { hops = 0; open(""); } }, 2 * AGAIN_MS);
        } else if (data.code === "session_moving") {
          again(AGAIN_MS);
        }
      });
      socket.on("disconnect", (reason) => { if (reason === "io server disconnect") again(AGAIN_MS); });
      onSocket(socket);
    }
    open("");
  };
})();
