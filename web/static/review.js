// The synchronised player of the review page (signaling/review.py): one <video> per person,
// one clock for all. Each person's segments are listed as <li data-start data-end data-src>
// in session media time (seconds since the session was created); the clock picks the segment
// covering the current time for each person, seeks inside it and corrects drift over 0.3 s.
"use strict";
(function () {
  const player = document.getElementById("player");
  if (!player) return;
  const start = parseFloat(player.dataset.start);
  const end = parseFloat(player.dataset.end);
  const seek = document.getElementById("seek");
  const out = document.getElementById("time");
  const toggle = document.getElementById("toggle");
  const sound = document.getElementById("sound");
  const tracks = Array.from(player.querySelectorAll(".track")).map((fig) => ({
    fig,
    video: fig.querySelector("video"),
    segs: Array.from(fig.querySelectorAll("li")).map((li) => ({
      start: parseFloat(li.dataset.start),
      end: parseFloat(li.dataset.end),
      src: li.dataset.src,
    })),
    current: null,
    base: 0, // the video's own time at the segment's start (WebM keeps media time, or not)
    known: false, // base is known (the segment's metadata has loaded)
  }));
  let t = start;
  let playing = false;
  let last = 0;

  function clock(s) {
    s = Math.max(0, Math.floor(s - start));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), x = s % 60;
    return h + ":" + String(m).padStart(2, "0") + ":" + String(x).padStart(2, "0");
  }

  function place(tr) {
    const seg = tr.segs.find((s) => t >= s.start && t < s.end + 0.05) || null;
    if (seg !== tr.current) {
      tr.current = seg;
      if (!seg) {
        tr.video.pause();
        tr.video.removeAttribute("src");
        tr.video.load();
        tr.fig.classList.remove("playing");
        return;
      }
      tr.known = false;
      tr.video.src = seg.src;
      // Where the file's time starts: Chromium keeps the WebM's timestamps (the segment's media
      // time) yet reports buffered and seekable from 0, so the end tells: a file that ends near
      // the segment's media end keeps media time, one that ends near its length starts at 0.
      tr.video.addEventListener(
        "loadedmetadata",
        () => {
          if (tr.current !== seg) return; // a later segment replaced this one meanwhile
          const v = tr.video;
          const fileEnd = isFinite(v.duration)
            ? v.duration
            : v.seekable.length && isFinite(v.seekable.end(0)) ? v.seekable.end(0) : 0;
          const kept = Math.abs(fileEnd - seg.end) <= Math.abs(fileEnd - (seg.end - seg.start));
          tr.base = kept ? seg.start : 0;
          tr.known = true;
          v.currentTime = tr.base + (t - seg.start);
          if (playing) v.play().catch(() => {});
        },
        { once: true }
      );
    }
    if (!seg) return;
    tr.fig.classList.add("playing");
    tr.video.muted = !sound.checked;
    const want = tr.base + (t - seg.start);
    if (tr.known && tr.video.readyState >= 1 && Math.abs(tr.video.currentTime - want) > 0.3) {
      tr.video.currentTime = want;
    }
    if (playing && tr.known && tr.video.paused) tr.video.play().catch(() => {});
    if (!playing && !tr.video.paused) tr.video.pause();
  }

  function render() {
    player.dataset.state = playing ? "playing" : "paused"; // for styles and tests
    seek.value = String(t); // a range input rounds it to its step (0.1 s): t is the clock
    out.textContent = clock(t);
    tracks.forEach(place);
  }

  // The clock holds while a person's segment is still loading or seeking (a new segment, a
  // slow link), so nobody's picture is skipped; a segment that failed to load is not waited for.
  function buffering() {
    return tracks.some(
      (tr) =>
        tr.current &&
        !tr.video.error &&
        (!tr.known || tr.video.seeking || tr.video.readyState < 3)
    );
  }

  function frame(now) {
    if (!playing) return;
    if (last && !buffering()) t = Math.min(end, t + (now - last) / 1000);
    last = now;
    render();
    if (t >= end) {
      playing = false;
      render();
      return;
    }
    requestAnimationFrame(frame);
  }

  toggle.addEventListener("click", () => {
    playing = !playing;
    last = 0;
    if (t >= end) t = start;
    render();
    if (playing) requestAnimationFrame(frame);
  });
  seek.addEventListener("input", () => {
    t = parseFloat(seek.value);
    render();
  });
  sound.addEventListener("change", render);
  render();
})();

// The export's progress bar on the review page: polls /review/<session>/export/status while the
// background job runs (the server renders the bar only then) and reloads the page when it ends,
// so the new export and its download form appear. The state labels are server-rendered in both
// languages; CSS shows the one matching data-state.
(function () {
  const box = document.getElementById("export");
  if (!box) return;
  const bar = document.getElementById("export-progress");
  const pct = document.getElementById("export-percent");
  const running = (s) => s === "queued" || s === "running";
  const began = box.dataset.state;
  function tick() {
    fetch(box.dataset.status, { credentials: "same-origin", cache: "no-store" })
      .then((r) => (r.ok ? r.json() : Promise.reject(r.status)))
      .then((s) => {
        const p = Math.round(s.progress * 100);
        bar.value = p;
        pct.textContent = p + "%";
        box.dataset.state = s.state;
        if (running(s.state)) setTimeout(tick, 1000);
        else if (running(began)) location.reload();
      })
      .catch(() => setTimeout(tick, 5000));
  }
  if (running(began)) tick();
})();
