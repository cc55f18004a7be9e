// The mediation agreement inside the call: the mediator drafts it live, freezes it into a PDF,
// watches the signatures come in and seals it; everyone reads the draft and the frozen PDF
// (pdf.js) with its fingerprint; a signer signs on the phone when it is their turn.
//
// Signing (docs/esign.md, "Message protocol"): a one-time non-extractable WebCrypto P-256 key
// is made for each attempt and never stored; the page proves it holds the key, gets a
// certificate for it, reads the PDF, asks the server to prepare the signature, and then checks
// with its own code that what it is asked to sign is exactly the document shown — the server is
// not trusted for that. Only then may the person press "Sign"; any failed check is a refusal.
(function () {
  const P = window.parley;
  const $ = (id) => document.getElementById(id);
  const t = (k) => i18n.t(k);
  const token = decodeURIComponent(location.pathname.split("/").pop());
  const POP_PREFIX = new TextEncoder().encode("parley-esign-pop-v1\0");
  const ECDSA = { name: "ECDSA", hash: "SHA-256" };
  const CASE_TYPES = ["civil", "commercial", "consumer", "debt", "labour", "neighbourhood",
    "property_damage", "tenancy", "traffic", "other"];  // esign.agreement.ALLOWED_CASE_TYPES
  const ALLOWED_ATTRS = new Set([asn1.OID.contentType, asn1.OID.messageDigest,
    asn1.OID.signingCertificateV2, asn1.OID.commitmentType, asn1.OID.cmsAlgorithmProtection]);

  // -- bytes -----------------------------------------------------------------------------------
  const b64 = (bytes) => {
    let s = "";
    for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return btoa(s);
  };
  const unb64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
  const hex = (bytes) => Array.from(bytes, (x) => x.toString(16).padStart(2, "0")).join("");
  const sha256 = async (bytes) => new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  const equal = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
  const concat = (...parts) => {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out;
  };
  const groups = (fp) => (fp || "").match(/.{1,8}/g)?.join(" ") || "";
  // The check code people read aloud: the first 8 hex digits (32 bits) of the fingerprint as an
  // unsigned number, modulo 1 000 000, as 6 decimal digits grouped 3-3 ("042 917"). Digits, not
  // hex, so that it is easy to say in Chinese. It is for comparing aloud only; the page itself
  // compares the full fingerprint with the server's.
  const checkCode = (fp) => {
    const n = parseInt((fp || "").slice(0, 8), 16);
    if (!/^[0-9a-f]{8}/.test(fp || "") || !Number.isFinite(n)) return "";
    const d = String(n % 1000000).padStart(6, "0");
    return `${d.slice(0, 3)} ${d.slice(3)}`;
  };
  const el = (tag, cls, text) => {
    const x = document.createElement(tag);
    if (cls) x.className = cls;
    if (text != null) x.textContent = text;
    return x;
  };
  // "Details" shows or hides the full fingerprint next to a check code.
  function detailsToggle(button, target, changed = () => {}) {
    const sync = () => {
      button.textContent = t(target.hidden ? "ag_details" : "ag_hide_details");
      button.setAttribute("aria-expanded", target.hidden ? "false" : "true");
    };
    button.onclick = () => { target.hidden = !target.hidden; sync(); changed(!target.hidden); };
    sync();
    return sync;
  }

  class Refusal extends Error {}
  const refuse = (key, detail) => { throw new Refusal(t(key) + (detail ? ` (${detail})` : "")); };

  // -- talking to the server ---------------------------------------------------------------------
  async function emit(event, payload, ms = 30000) {
    const reply = await P.socket.timeout(ms).emitWithAck(event, { v: 1, ...payload })
      .catch(() => ({ ok: false, error: { code: "timeout", message: t("reconnecting") } }));
    if (!reply || !reply.ok) {
      const e = (reply && reply.error) || { code: "error", message: "" };
      throw Object.assign(new Error(`${e.message} (${e.code})`), { code: e.code });
    }
    return reply;
  }

  async function download(name) {
    const r = await fetch(`/api/sessions/${P.view.session.id}/${name}`,
      { headers: { Authorization: "Bearer " + token }, cache: "no-store" });
    if (!r.ok) throw new Error(`${name}: HTTP ${r.status}`);
    return new Uint8Array(await r.arrayBuffer());
  }

  function save(bytes, name, type) {
    const url = URL.createObjectURL(new Blob([bytes], { type }));
    const a = document.createElement("a");
    a.href = url; a.download = name;
    document.body.appendChild(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  }

  // -- pdf.js ----------------------------------------------------------------------------------
  let pdfjs = null;
  const rendered_bytes = new WeakMap();  // container -> the PDF bytes last shown in it
  async function loadPdfjs() {
    if (!pdfjs) {
      pdfjs = await import("/vendor/pdfjs/build/pdf.min.mjs");
      pdfjs.GlobalWorkerOptions.workerSrc = "/vendor/pdfjs/build/pdf.worker.min.mjs";
    }
    return pdfjs;
  }

  // Render every page into `container`; returns the page texts and the embedded agreement.json.
  async function renderPdf(bytes, container) {
    const lib = await loadPdfjs();
    const doc = await lib.getDocument({
      data: bytes.slice(),  // pdf.js takes the buffer over; keep ours intact
      cMapUrl: "/vendor/pdfjs/cmaps/", cMapPacked: true,
      standardFontDataUrl: "/vendor/pdfjs/standard_fonts/", isEvalSupported: false,
    }).promise;
    try {
      const texts = [];
      const canvases = [];
      const width = Math.min(container.clientWidth || 600, 900);
      for (let n = 1; n <= doc.numPages; n++) {
        const page = await doc.getPage(n);
        const base = page.getViewport({ scale: 1 });
        const viewport = page.getViewport({ scale: (width / base.width) * (window.devicePixelRatio || 1) });
        const canvas = document.createElement("canvas");
        canvas.width = Math.floor(viewport.width); canvas.height = Math.floor(viewport.height);
        canvas.className = "ag-page"; canvas.dataset.page = String(n);
        await page.render({ canvas, canvasContext: canvas.getContext("2d"), viewport }).promise;
        canvases.push(canvas);
        const content = await page.getTextContent();
        texts.push(content.items.map((i) => i.str || "").join(""));
      }
      container.replaceChildren(...canvases);
      rendered_bytes.set(container, bytes);
      const files = (await doc.getAttachments()) || {};
      const attached = Object.values(files).find((f) => f.filename === "agreement.json");
      return { texts, agreementJson: attached ? new Uint8Array(attached.content) : null };
    } finally {
      doc.destroy();
    }
  }

  // RFC 8785 for what an agreement holds (objects, arrays, strings, integers): sorted keys in
  // UTF-16 order and ES6 string escaping, which JSON.stringify already does.
  function canonical(value) {
    if (Array.isArray(value)) return "[" + value.map(canonical).join(",") + "]";
    if (value && typeof value === "object") {
      return "{" + Object.keys(value).sort()
        .map((k) => JSON.stringify(k) + ":" + canonical(value[k])).join(",") + "}";
    }
    if (typeof value === "number" && !Number.isSafeInteger(value)) throw new Refusal("float in agreement data");
    return JSON.stringify(value);
  }

  // The fingerprint the person is shown: SHA-256 of the embedded canonical agreement data.
  async function fingerprintOf(rendered) {
    if (!rendered.agreementJson) refuse("ag_err_no_data");
    const text = new TextDecoder("utf-8", { fatal: true }).decode(rendered.agreementJson);
    const data = JSON.parse(text);
    if (canonical(data) !== text) refuse("ag_err_not_canonical");
    // Signers outside this person's room are not in the view; the agreement names them.
    for (const s of [...(data.parties || []), data.mediator || {}]) {
      if (s.participant_id) signerNames[s.participant_id] = s.name;
    }
    return hex(await sha256(rendered.agreementJson));
  }

  // -- the signer's checks (esign/phone.py PythonPhone.check, in the browser) ---------------------
  async function checkRequest(req, ctx) {
    const prepared = unb64(req.prepared_pdf);
    const base = ctx.reviewed;
    if (req.reviewed_base_len !== base.length || req.reviewed_base_sha256 !== hex(await sha256(base)) ||
        !equal(prepared.subarray(0, base.length), base)) refuse("ag_err_not_extension");
    if (req.fingerprint !== ctx.fingerprint) refuse("ag_err_fingerprint");
    const range = req.byte_range;
    if (!Array.isArray(range) || range.length !== 4 || !range.every((x) => Number.isSafeInteger(x) && x >= 0)) {
      refuse("ag_err_byte_range", "malformed");
    }
    const [start, a, b, c] = range;
    if (!(start === 0 && base.length < a && a < b && b + c === prepared.length)) refuse("ag_err_byte_range");
    const hole = new TextDecoder("latin1").decode(prepared.subarray(a, b));
    if (!/^<0*>$/.test(hole)) refuse("ag_err_hole");
    const tail = new TextDecoder("latin1").decode(prepared.subarray(base.length));
    const declared = /\/ByteRange\s*\[\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\]/.exec(tail);
    if (!declared || declared.slice(1).map(Number).join() !== range.join()) refuse("ag_err_byte_range", "/ByteRange");

    const attrsDer = unb64(req.signed_attrs);
    let attrs;
    try { attrs = asn1.signedAttributes(attrsDer); } catch (e) { refuse("ag_err_attrs", e.message); }
    const byType = new Map(attrs.map((x) => [x.type, x.values[0]]));
    if (byType.size !== attrs.length || attrs.some((x) => !ALLOWED_ATTRS.has(x.type) || x.values.length !== 1)) {
      refuse("ag_err_attrs", attrs.map((x) => x.type).join(" "));
    }
    const digest = byType.get(asn1.OID.messageDigest);
    const covered = await sha256(concat(prepared.subarray(0, a), prepared.subarray(b, b + c)));
    if (!digest || digest.tag !== 0x04 || !equal(asn1.content(attrsDer, digest), covered)) refuse("ag_err_digest");
    const signingCert = byType.get(asn1.OID.signingCertificateV2);
    let named = null;
    try { named = signingCert && asn1.signingCertificateHash(attrsDer, signingCert); } catch (e) { named = null; }
    if (!named || !equal(named, await sha256(ctx.certificate))) refuse("ag_err_certificate");
    if (req.certificate !== b64(ctx.certificate)) refuse("ag_err_certificate");
    return { prepared, attrsDer };
  }

  // -- the signing attempt ----------------------------------------------------------------------
  let attempt = null;  // {version, keys, certificate, reviewed, fingerprint, texts, request, attrsDer}
  let lastError = "";

  function step(text, refused = false) {
    const el = $("ag-sign-step");
    el.textContent = text;
    el.classList.toggle("refused", refused);
    el.dataset.refused = refused ? "1" : "";
  }

  async function startSigning() {
    const a = P.view.agreement;
    $("ag-sign-now").disabled = true;
    $("ag-confirm").disabled = true;
    $("ag-review").hidden = true;
    const mine = attempt = { version: a.version };
    try {
      step(t("ag_step_key"));
      mine.keys = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, ["sign"]);
      const spki = new Uint8Array(await crypto.subtle.exportKey("spki", mine.keys.publicKey));
      const { challenge } = await emit("esign", { action: "challenge" });
      const nonce = unb64(challenge.nonce);
      const pop = new Uint8Array(await crypto.subtle.sign(ECDSA, mine.keys.privateKey, concat(POP_PREFIX, nonce)));
      const request = { type: "esign.enrol", participant_id: P.me, public_key_spki: b64(spki),
        nonce: challenge.nonce, proof_of_possession: b64(pop) };
      const { enrolment } = await emit("esign", { action: "enrol", request });
      mine.certificate = unb64(enrolment.certificate);
      let certKey = null;
      try { certKey = asn1.certificateSpki(mine.certificate); } catch (e) { certKey = null; }
      if (!certKey || !equal(certKey, spki)) refuse("ag_err_not_my_key");

      step(t("ag_step_review"));
      mine.reviewed = await download("agreement.pdf");
      if (a.pdf_sha256 && hex(await sha256(mine.reviewed)) !== a.pdf_sha256) refuse("ag_err_pdf_hash");
      const shown = await renderPdf(mine.reviewed, $("ag-review-pages"));
      mine.fingerprint = await fingerprintOf(shown);
      if (mine.fingerprint !== a.fingerprint) refuse("ag_err_fingerprint");

      step(t("ag_step_prepare"));
      const { request: req } = await emit("esign", { action: "prepare" });
      const { prepared, attrsDer } = await checkRequest(req, mine);
      // Show the person the exact bytes they will sign, and compare them with what they read.
      const again = await renderPdf(prepared, $("ag-review-pages"));
      if (await fingerprintOf(again) !== mine.fingerprint) refuse("ag_err_fingerprint");
      if (again.texts.length !== shown.texts.length || again.texts.some((x, i) => x !== shown.texts[i])) {
        refuse("ag_err_pages_differ");
      }
      if (attempt !== mine) return;
      mine.request = req; mine.attrsDer = attrsDer;
      $("ag-review-fingerprint").textContent = `${t("ag_fp_full")} ${groups(mine.fingerprint)}`;
      $("ag-review-code").textContent = checkCode(mine.fingerprint);
      $("ag-review-code").dataset.code = checkCode(mine.fingerprint);
      $("ag-review").hidden = false;
      $("ag-confirm").disabled = false;
      step(t("ag_step_confirm"));
      $("ag-review").scrollIntoView({ block: "start" });
    } catch (e) {
      if (attempt === mine) attempt = null;
      lastError = e.message;
      step((e instanceof Refusal ? t("ag_refused") : t("error")) + e.message, e instanceof Refusal);
      $("ag-review").hidden = true;
      $("ag-sign-now").disabled = false;
    }
  }

  async function confirmSignature() {
    const mine = attempt;
    if (!mine || !mine.request) return;
    $("ag-confirm").disabled = true;
    try {
      step(t("ag_step_signing"));
      const sig = new Uint8Array(await crypto.subtle.sign(ECDSA, mine.keys.privateKey, mine.attrsDer));
      const reply = { type: "esign.signature", token: mine.request.token, signature_p1363: b64(sig) };
      const { receipt } = await emit("esign", { action: "sign", reply });
      attempt = null;
      showReceipt(receipt, mine.fingerprint);
      step("");
      $("ag-review").hidden = true;
    } catch (e) {
      attempt = null;
      lastError = e.message;
      step(t("error") + e.message);
      $("ag-review").hidden = true;
      $("ag-sign-now").disabled = false;
    }
  }

  let lastReceipt = null;  // {r, fingerprint}: the last receipt, drawn again on a language change
  function showReceipt(r, fingerprint) {
    lastReceipt = { r, fingerprint };
    drawReceipt();
    $("ag-receipt").scrollIntoView({ block: "center" });
  }
  function drawReceipt() {
    if (!lastReceipt) return;
    const { r, fingerprint } = lastReceipt;
    const box = $("ag-receipt");
    const key = [r.version, r.signed_at, i18n.lang].join();
    if (box.dataset.drawn === key && !box.hidden) return;
    box.dataset.drawn = key;
    box.hidden = false;
    box.dataset.version = String(r.version);
    const code = el("strong", "ag-code", checkCode(fingerprint));
    code.id = "ag-receipt-code";
    code.dataset.code = checkCode(fingerprint);
    const codeLine = el("p", "ag-receipt-line");
    codeLine.append(t("ag_code_label") + " ", code);
    box.replaceChildren(
      el("p", "ag-receipt-title", `✔ ${t("ag_signed_you")}`),
      el("p", "ag-receipt-line", `${t("ag_signed_at")} ${new Date(r.signed_at).toLocaleString(i18n.lang === "zh" ? "zh-CN" : "en-GB")}`),
      codeLine,
      el("p", "ag-receipt-line", t("ag_after_sign")),
      el("p", "ag-receipt-tech", `${t("ag_receipt_tech")} ${t("ag_receipt")} ${r.case_no} v${r.version} · ${r.field_name} · ` +
        `PDF ${groups(r.pdf_sha256.slice(0, 16))}… · ${t("ag_ledger")} ${r.ledger_head.slice(0, 12)}…`),
    );
  }

  async function decline(e) {
    e.preventDefault();
    const reason = $("ag-decline-reason").value.trim();
    if (!reason) { step(t("ag_decline_reason")); return; }
    if (!confirm(t("ag_confirm_decline"))) return;
    attempt = null;
    try { await emit("esign", { action: "decline", reason }); step(t("ag_declined_you")); } catch (err) { step(t("error") + err.message); }
  }

  // -- the mediator's editor --------------------------------------------------------------------
  let editorDirty = false;
  let editorDraft = -1;

  function fillEditor(a) {
    const select = $("ag-case-type");
    if (!select.options.length) for (const c of CASE_TYPES) select.add(new Option("", c));
    for (const option of select.options) option.textContent = t("ag_case_" + option.value);
    if (editorDirty || a.draft === editorDraft) return;
    editorDraft = a.draft || 0;
    if (a.case_type) select.value = a.case_type;
    $("ag-language").value = a.language || (i18n.lang === "zh" ? "zh-CN" : "en");
    $("ag-terms").value = (a.terms || []).join("\n");
  }

  async function mediatorStep(button, event, payload) {
    button.disabled = true;
    try {
      await emit(event, payload, 60000);
      $("ag-editor-status").textContent = "";
      return true;
    } catch (e) {
      lastError = e.message;
      $("ag-editor-status").textContent = t("error") + e.message;
      return false;
    } finally { button.disabled = false; }
  }

  // -- rendering the panel ----------------------------------------------------------------------
  let shownPdf = "";
  let shownText = "";  // the text pdf.js read from the PDF on show (for the record and tests)
  let viewer = Promise.resolve();
  let shownFp = null;  // {fp, matches}: the fingerprint read from the PDF everyone sees
  let fpOpen = false;

  // Everyone's page: the check code, large, to read aloud; the full fingerprint under "Details".
  function drawFingerprint() {
    const box = $("ag-fingerprint");
    if (!shownFp) return;
    const { fp, matches } = shownFp;
    const key = [fp, matches, i18n.lang].join();
    if (box.dataset.drawn === key) return;
    box.dataset.drawn = key;
    const code = el("strong", "ag-code", checkCode(fp));
    code.id = "ag-check-code";
    code.dataset.code = checkCode(fp);
    const toggle = el("button", "ag-fp-toggle");
    toggle.type = "button";
    const full = el("span", "ag-fp-full", `${t("ag_fp_full")} ${groups(fp)}`);
    full.hidden = !fpOpen;
    detailsToggle(toggle, full, (open) => { fpOpen = open; });
    const parts = [t("ag_code_label") + " ", code, toggle];
    if (!matches) parts.push(el("span", "status refused", " ≠ " + t("ag_err_fingerprint")));
    parts.push(el("span", "hint ag-code-hint", t("ag_code_hint")), full);
    box.classList.add("ag-code-box");
    box.replaceChildren(...parts);
  }

  function isHost(me) { return me.role === "mediator" || me.role === "co_mediator"; }

  const signerNames = {};
  function name(pid) {
    const p = P.people().find((x) => x.id === pid);
    return p ? p.name : signerNames[pid] || "—";
  }

  function statusText(a) {
    const version = a.version ? ` · v${a.version}` : "";
    if (a.status === "signing") return `${t("ag_status_signing")}${version} · ${t("ag_next")} ${name(a.next)}`;
    if (a.status === "declined") return `${t("ag_status_declined")}${version} · ${name(a.declined_by)}`;
    return t("ag_status_" + (a.status || "none")) + version;
  }

  function render() {
    const me = P.myself();
    const a = (P.view && P.view.agreement) || {};
    const host = isHost(me);
    const panel = $("agreement-panel");
    panel.hidden = !(host || a.draft);
    $("ag-turn").hidden = true;
    if (panel.hidden) return;
    panel.dataset.status = a.status || "none";
    panel.dataset.version = String(a.version || 0);
    $("ag-status").textContent = statusText(a);

    $("ag-editor").hidden = !host;
    if (host) {
      fillEditor(a);
      $("ag-edit-warning").hidden = !(a.version && a.status !== "sealed");
      $("ag-freeze").hidden = !!a.version;
      $("ag-seal").hidden = a.status !== "complete";
      $("ag-save").disabled = a.status === "sealed";
      $("ag-download-evidence").hidden = a.status !== "sealed";
    }
    $("ag-download-pdf").hidden = !a.version;

    const list = $("ag-draft");
    const terms = a.terms || [];
    if (list.dataset.key !== JSON.stringify(terms)) {
      list.dataset.key = JSON.stringify(terms);
      list.replaceChildren(...terms.map((x) => { const li = document.createElement("li"); li.textContent = x; return li; }));
    }

    const signers = $("ag-signers");
    signers.replaceChildren(...(a.signers || []).map((pid) => {
      const li = document.createElement("li");
      const done = (a.signed || []).includes(pid);
      li.dataset.participant = pid;
      li.dataset.signed = done ? "1" : "";
      li.textContent = `${done ? "✔" : pid === a.next ? "✍" : "…"} ${name(pid)}${pid === P.me ? t("you") : ""}`;
      return li;
    }));

    if (a.version && a.pdf_sha256 && a.pdf_sha256 !== shownPdf) showPdf(a);
    if (!a.version) {
      $("ag-fingerprint").replaceChildren(); $("ag-fingerprint").classList.remove("ag-code-box");
      delete $("ag-fingerprint").dataset.drawn;
      $("ag-pages").replaceChildren(); shownPdf = ""; shownFp = null;
    } else drawFingerprint();
    $("ag-read").hidden = !a.version || !rendered_bytes.get($("ag-pages"));

    const signer = (a.signers || []).includes(P.me) && a.status === "signing" && !(a.signed || []).includes(P.me);
    if (attempt && attempt.version !== a.version) {  // a new version while reviewing: start over
      attempt = null; $("ag-review").hidden = true; step(t("ag_new_version"));
    }
    $("ag-sign").hidden = !signer;
    const myTurn = signer && a.next === P.me;
    $("ag-sign-now").hidden = !myTurn || !!(attempt && attempt.request);
    if (myTurn && !attempt) $("ag-sign-now").disabled = false;
    $("ag-wait-turn").hidden = myTurn;
    $("ag-turn").hidden = !myTurn || $("screen-call").hidden;
    drawReceipt();
    if (lastReceipt && lastReceipt.r.version !== a.version) { lastReceipt = null; $("ag-receipt").hidden = true; }
  }

  // The PDF everyone reads: downloaded again whenever the session names a new hash.
  function showPdf(a) {
    shownPdf = a.pdf_sha256;
    viewer = viewer.then(async () => {
      if (shownPdf !== a.pdf_sha256) return;
      try {
        const bytes = await download("agreement.pdf");
        if (hex(await sha256(bytes)) !== a.pdf_sha256) { shownPdf = ""; return; }  // moved on
        const rendered = await renderPdf(bytes, $("ag-pages"));
        const fp = await fingerprintOf(rendered);
        shownFp = { fp, matches: fp === a.fingerprint };
        drawFingerprint();
        $("ag-fingerprint").dataset.fingerprint = fp;
        shownText = rendered.texts.join("\n");
        P.render();  // the agreement now names signers who are not in this person's room
      } catch (e) {
        lastError = e.message;
        $("ag-fingerprint").textContent = t("error") + e.message;
      }
    });
  }

  $("ag-editor").onsubmit = async (e) => {
    e.preventDefault();
    const terms = $("ag-terms").value.split("\n").map((x) => x.trim()).filter(Boolean);
    if (!terms.length) { $("ag-editor-status").textContent = t("ag_need_terms"); return; }
    const ok = await mediatorStep($("ag-save"), "agreement",
      { action: "draft", case_type: $("ag-case-type").value, language: $("ag-language").value, terms });
    if (ok) { editorDirty = false; render(); }
  };
  for (const id of ["ag-terms", "ag-case-type", "ag-language"]) $(id).oninput = () => { editorDirty = true; };
  $("ag-freeze").onclick = () => { if (confirm(t("ag_confirm_freeze"))) mediatorStep($("ag-freeze"), "agreement", { action: "freeze" }); };
  $("ag-seal").onclick = () => mediatorStep($("ag-seal"), "agreement", { action: "seal" });
  $("ag-download-pdf").onclick = async () => {
    try { save(await download("agreement.pdf"), "agreement.pdf", "application/pdf"); } catch (e) { step(t("error") + e.message); }
  };
  $("ag-download-evidence").onclick = async () => {
    try { save(await download("evidence.zip"), "evidence.zip", "application/zip"); } catch (e) { $("ag-editor-status").textContent = t("error") + e.message; }
  };
  // -- full-screen reading: page n of m, previous/next, zoom (fit width = 1), at device pixels ---
  const reader = { doc: null, page: 1, zoom: 1, chain: Promise.resolve(), opener: null };

  async function openViewer(container, opener) {
    const bytes = rendered_bytes.get(container);
    if (!bytes) return;
    const lib = await loadPdfjs();
    if (reader.doc) reader.doc.destroy();
    reader.doc = await lib.getDocument({
      data: bytes.slice(), cMapUrl: "/vendor/pdfjs/cmaps/", cMapPacked: true,
      standardFontDataUrl: "/vendor/pdfjs/standard_fonts/", isEvalSupported: false,
    }).promise;
    reader.page = 1; reader.zoom = 1; reader.opener = opener;
    $("ag-viewer").hidden = false;
    document.documentElement.classList.add("ag-viewing");
    i18n.apply($("ag-viewer"));
    drawViewer();
    $("ag-viewer-close").focus();
  }

  function closeViewer() {
    $("ag-viewer").hidden = true;
    document.documentElement.classList.remove("ag-viewing");
    $("ag-viewer-body").replaceChildren();
    reader.chain = reader.chain.then(() => { if (reader.doc) reader.doc.destroy(); reader.doc = null; });
    if (reader.opener) reader.opener.focus();
  }

  function drawViewer() {
    reader.chain = reader.chain.then(async () => {
      const doc = reader.doc;
      if (!doc || $("ag-viewer").hidden) return;
      const n = Math.min(Math.max(1, reader.page), doc.numPages);
      reader.page = n;
      $("ag-viewer-page").textContent = `${n} / ${doc.numPages}`;
      $("ag-viewer-prev").disabled = n <= 1;
      $("ag-viewer-next").disabled = n >= doc.numPages;
      $("ag-viewer-out").disabled = reader.zoom <= 0.5;
      $("ag-viewer-in").disabled = reader.zoom >= 4;
      const page = await doc.getPage(n);
      const base = page.getViewport({ scale: 1 });
      const body = $("ag-viewer-body");
      const fit = Math.max(200, body.clientWidth - 16);
      const cssWidth = Math.round(fit * reader.zoom);
      const dpr = window.devicePixelRatio || 1;
      const viewport = page.getViewport({ scale: (cssWidth / base.width) * dpr });
      const canvas = document.createElement("canvas");
      canvas.id = "ag-viewer-canvas";
      canvas.width = Math.floor(viewport.width); canvas.height = Math.floor(viewport.height);
      canvas.style.width = `${cssWidth}px`;  // CSSOM, allowed under style-src 'self'
      canvas.style.height = `${Math.round(viewport.height / dpr)}px`;
      canvas.dataset.page = String(n);
      await page.render({ canvas, canvasContext: canvas.getContext("2d"), viewport }).promise;
      body.replaceChildren(canvas);
    }).catch((e) => { lastError = e.message; $("ag-viewer-page").textContent = t("error") + e.message; });
  }

  const zoomTo = (z) => { reader.zoom = Math.min(4, Math.max(0.5, Math.round(z * 100) / 100)); drawViewer(); };
  $("ag-read").onclick = () => openViewer($("ag-pages"), $("ag-read"));
  $("ag-review-read").onclick = () => openViewer($("ag-review-pages"), $("ag-review-read"));
  $("ag-viewer-prev").onclick = () => { reader.page -= 1; drawViewer(); $("ag-viewer-body").scrollTo(0, 0); };
  $("ag-viewer-next").onclick = () => { reader.page += 1; drawViewer(); $("ag-viewer-body").scrollTo(0, 0); };
  $("ag-viewer-in").onclick = () => zoomTo(reader.zoom * 1.25);
  $("ag-viewer-out").onclick = () => zoomTo(reader.zoom / 1.25);
  $("ag-viewer-fit").onclick = () => zoomTo(1);
  $("ag-viewer-close").onclick = closeViewer;
  document.addEventListener("keydown", (e) => { if (e.key === "Escape" && !$("ag-viewer").hidden) closeViewer(); });
  detailsToggle($("ag-review-details"), $("ag-review-fingerprint"));
  $("ag-turn-go").onclick = () => {
    $("ag-sign").scrollIntoView({ block: "start" });
    const go = $("ag-sign-now");
    if (!go.hidden) go.focus({ preventScroll: true });
  };

  $("ag-sign-now").onclick = startSigning;
  $("ag-confirm").onclick = confirmSignature;
  $("ag-decline-form").onsubmit = decline;

  // The server drops a prepared signature when the phone's connection goes: start over.
  P.socket.on("disconnect", () => {
    if (!attempt) return;
    attempt = null;
    $("ag-review").hidden = true;
    $("ag-confirm").disabled = true;
    step(t("ag_reconnected"));
  });

  window.parleyAgreement = {
    get lastError() { return lastError; }, get shownText() { return shownText; }, canonical,
  };
  P.hooks.push(render);
})();
