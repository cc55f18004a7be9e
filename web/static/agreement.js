// The mediation agreement inside the call: the mediator drafts it live, freezes it into a PDF,
// watches the signatures come in and seals it; everyone reads the draft and the frozen PDF
// (pdf.js) with its fingerprint; a signer signs on the phone when it is their turn.
//
// Signing (docs/esign.md, "Message protocol"): a one-time non-extractable WebCrypto P-256 key
// is made for each attempt and never stored; the page proves it holds the key, gets a
// certificate for it, reads the PDF, asks the server to prepare the signature, and then checks
// with its own code that what it is asked to sign is exactly the document shown — the server is
// not trusted for that. Only then may the person press "Sign"; any failed check is a refusal.
// The checks mirror esign/phone.py (PythonPhone): the certificate chains to the organisation
// root whose fingerprint came with the invitation link (#root=…), names this signer, role and
// case; the text of the PDF is what the embedded agreement data says; the prepared signature
// carries the expected values. Every message shown is a plain sentence (i18n), never a raw code.
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
  const ID_DATA = "1.2.840.113549.1.7.1", PROOF_OF_APPROVAL = "1.2.840.113549.1.9.16.6.5";
  const SHA256 = "2.16.840.1.101.3.4.2.1", ECDSA_SHA256 = "1.2.840.10045.4.3.2";
  const SAN_PREFIX = "urn:x-parley:case:";  // esign.pki.event_san
  // The fixed wording of the agreement PDF (esign/templates.py, the keys the pages print; kept
  // equal by tests/unit/esign/test_page_words.py): the page compares the PDF's text with what
  // these words and the embedded data say.
  const DOC_WORDS = {
    "zh-CN": {
      "title": "调解协议书", "case_no": "案号：{case_no}", "version": "版本：第 {version} 版",
      "date": "日期：{date}", "organisation": "调解组织：{organisation}",
      "applicant": "申请人：{name}", "respondent": "被申请人：{name}", "mediator": "调解员：{name}",
      "preamble": "经调解员主持调解，各方当事人在自愿、合法的基础上达成如下协议：",
      "closing": "本协议经各方当事人签名、调解员签名并加盖调解组织印章后生效。各方可自本协议生效之日起三十日内共同向人民法院申请司法确认。",
      "signatures": "签署", "sig_applicant": "申请人签名", "sig_respondent": "被申请人签名",
      "sig_mediator": "调解员签名", "sig_seal": "调解组织印章",
      "footer": "协议指纹（SHA-256）：{fingerprint}", "page": "第 {page} 页 / 共 {pages} 页",
      "supersedes": "本版本取代第 {version} 版（指纹 {fingerprint}）"
    },
    "en": {
      "title": "Mediation Agreement", "case_no": "Case number: {case_no}", "version": "Version: {version}",
      "date": "Date: {date}", "organisation": "Mediation organisation: {organisation}",
      "applicant": "Applicant: {name}", "respondent": "Respondent: {name}", "mediator": "Mediator: {name}",
      "preamble": "Under the guidance of the mediator, the parties have freely and lawfully agreed as follows:",
      "closing": "This agreement takes effect when signed by every party and by the mediator and sealed by the mediation organisation. The parties may jointly apply to a court for judicial confirmation within thirty days of that date.",
      "signatures": "Signatures", "sig_applicant": "Applicant", "sig_respondent": "Respondent",
      "sig_mediator": "Mediator", "sig_seal": "Organisation seal",
      "footer": "Agreement fingerprint (SHA-256): {fingerprint}", "page": "Page {page} of {pages}",
      "supersedes": "This version replaces version {version} (fingerprint {fingerprint})"
    }
  };

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

  // A refusal says why in a plain sentence and what to do; the technical detail goes to
  // lastError (for the record and the tests), never on screen.
  class Refusal extends Error {}
  const refuse = (key, detail) => {
    throw Object.assign(new Refusal(t(key) + (detail ? ` (${detail})` : "")), { key });
  };
  // What the person reads for any failure: a refusal, a server error code (i18n.error), or
  // "could not open the file" for anything else.
  function say(e) {
    if (e instanceof Refusal) return `${t("ag_refused")}${t(e.key)}${i18n.lang === "zh" ? "。" : ". "}${t("ag_refused_next")}`;
    if (e && e.code) return i18n.error(e.code);
    return t("ag_err_open");
  }

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

  // The session named by this page's own invitation token (its payload is base64url JSON; the
  // server checks the token on every request): the downloads work without a view, e.g. when
  // the link is opened again after the session ended.
  function sessionId() {
    if (P.view && P.view.session) return P.view.session.id;
    try {
      const body = token.split(".")[0].replace(/-/g, "+").replace(/_/g, "/");
      return JSON.parse(atob(body + "=".repeat((4 - body.length % 4) % 4))).session || "";
    } catch (e) { return ""; }
  }

  async function download(name) {
    const r = await fetch(`/api/sessions/${encodeURIComponent(sessionId())}/${name}`,
      { headers: { Authorization: "Bearer " + token }, cache: "no-store" });
    if (!r.ok) {
      const body = await r.json().catch(() => ({}));
      const code = (body && body.error && body.error.code) || "unknown";
      throw Object.assign(new Error(`${name}: HTTP ${r.status} ${code}`), { code });
    }
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
      const lines = [];  // per page, the text lines as pdf.js reads them (hasEOL ends a line)
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
        const pageLines = [];
        let line = "";
        for (const item of content.items) {
          line += item.str || "";
          if (item.hasEOL) { pageLines.push(line); line = ""; }
        }
        if (line) pageLines.push(line);
        lines.push(pageLines);
      }
      container.replaceChildren(...canvases);
      rendered_bytes.set(container, bytes);
      const files = (await doc.getAttachments()) || {};
      const attached = Object.values(files).find((f) => f.filename === "agreement.json");
      return { texts, lines, agreementJson: attached ? new Uint8Array(attached.content) : null };
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
    rendered.data = data;
    return hex(await sha256(rendered.agreementJson));
  }

  // -- the text on the pages is the agreement data (esign/document.py's layout) ------------------
  // Compared with whitespace removed and Unicode NFKC: the PDF wraps long lines (dropping the
  // space at a break in Latin text, adding none between CJK characters), and pdf.js may give
  // compatibility forms of some characters. Everything else must be equal, in order: title,
  // case data, parties, the numbered terms, the closing clause, the signature labels, and on
  // every page the footer with this fingerprint and "page n of m". A term added, dropped or
  // changed by the renderer is a difference. (The signature boxes are drawn in annotations,
  // which pdf.js's page text does not include; `server.py verify` compares those.)
  const squash = (x) => String(x).normalize("NFKC").replace(/\s+/gu, "");
  const fill = (words, vars) => words.replace(/\{(\w+)\}/g, (_, k) => String(vars[k]));

  function signingOrder(data) {  // esign.agreement.signing_order / signer_role
    const order = [];
    for (const side of ["applicant", "respondent"]) {
      (data.parties || []).filter((p) => p.side === side).forEach((p, i) => order.push({
        pid: p.participant_id, field: side[0].toUpperCase() + side.slice(1) + (i + 1), role: side,
        name: p.name, digest: p.id_digest }));
    }
    const m = data.mediator || {};
    order.push({ pid: m.participant_id, field: "Mediator", role: "mediator", name: m.name,
      digest: `STAFF-${m.staff_id}` });
    return order;
  }

  function expectedLines(data, w) {
    const printed = typeof data.case_number === "string" ? data.case_number : data.case_no;
    return [
      w.title, fill(w.case_no, { case_no: printed }), fill(w.version, data), fill(w.date, data),
      fill(w.organisation, data),
      ...(data.parties || []).map((p) => fill(w[p.side] || "?", p)), fill(w.mediator, data.mediator || {}),
      ...(data.supersedes ? [fill(w.supersedes, data.supersedes)] : []),
      w.preamble, ...(data.terms || []).map((term, i) => `${i + 1}. ${term}`), w.closing, w.signatures,
      ...signingOrder(data).map((s) => w["sig_" + s.role]), w.sig_seal,
    ];
  }

  function checkPageText(rendered, fp, shownTerms) {
    const data = rendered.data;
    const w = DOC_WORDS[data.language];
    if (!w) refuse("ag_err_pages_text", `language ${data.language}`);
    if (shownTerms && JSON.stringify(shownTerms) !== JSON.stringify(data.terms)) refuse("ag_err_terms_shown");
    const pages = rendered.lines.length;
    let body = "";
    rendered.lines.forEach((lines, i) => {
      const foot = lines.slice(-2).map(squash);
      if (foot.length !== 2 || foot[0] !== squash(fill(w.footer, { fingerprint: fp })) ||
          foot[1] !== squash(fill(w.page, { page: i + 1, pages }))) refuse("ag_err_pages_text", `footer of page ${i + 1}`);
      body += lines.slice(0, -2).map(squash).join("");
    });
    const want = expectedLines(data, w).map(squash).join("");
    if (body !== want) {
      let at = 0;
      while (at < body.length && body[at] === want[at]) at++;
      refuse("ag_err_pages_text", `first difference at ${at}: ${JSON.stringify(body.slice(at, at + 40))}`);
    }
  }

  // -- the certificate: chain to the invited root, and it names me (esign/phone.py) --------------
  // The organisation's root fingerprint from the invitation link's fragment (#root=<sha256 hex>):
  // a fragment is never sent to the server, so the server cannot swap it. null when the link
  // has none (links made before it existed): the page then says so instead of a check.
  function invitedRoot() {
    const m = /(?:^#|&)root=([0-9A-Fa-f:]{64,95})(?:&|$)/.exec(location.hash || "");
    const value = m ? m[1].toLowerCase().replace(/:/g, "") : "";
    return /^[0-9a-f]{64}$/.test(value) ? value : null;
  }

  // leaf <- signer CA <- root, each signature valid, the CAs marked as CAs and valid now, and the
  // root the one the invitation named (when it named one).
  async function checkChain(leafDer, chain, root) {
    let certs;
    try {
      if (!Array.isArray(chain) || chain.length !== 2) refuse("ag_err_chain", "not signer CA + root");
      certs = [leafDer, ...chain.map(unb64)].map((der) => asn1.certificate(der));
    } catch (e) {
      if (e instanceof Refusal) throw e;
      refuse("ag_err_chain", e.message);
    }
    const [leaf, ca, top] = certs;
    if (root && hex(await sha256(top.der)) !== root) refuse("ag_err_root");
    const now = Date.now();
    for (const [child, parent] of [[leaf, ca], [ca, top], [top, top]]) {
      let ok = false;
      try { ok = await asn1.issuedBy(child, parent); } catch (e) { ok = false; }
      if (!ok) refuse("ag_err_chain", "a signature of the chain");
      // the leaf's 30-minute window is the server's to enforce; the issuers must be valid now
      if (child !== leaf && !(child.notBefore <= now && now <= child.notAfter)) refuse("ag_err_chain", "validity");
    }
    if (!ca.ca || !top.ca) refuse("ag_err_chain", "an issuer is not a CA");
    return leaf;
  }

  // The certificate names me as the agreement does: name and ID digest, and this case and role.
  function checkIdentity(cert, data, me) {
    const s = signingOrder(data).find((x) => x.pid === me);
    if (!s) refuse("ag_err_not_signer");
    const attr = (type) => cert.subjectNames.filter((x) => x.type === type).map((x) => x.value);
    const cn = attr(asn1.X509.commonName), serial = attr(asn1.X509.serialNumber);
    if (cn.length !== 1 || cn[0] !== s.name || serial.length !== 1 || serial[0] !== s.digest) {
      refuse("ag_err_cert_name", `${cn} ${serial}`);
    }
    if (cert.uris.length !== 1 || cert.uris[0] !== `${SAN_PREFIX}${data.case_no}:role:${s.role}`) {
      refuse("ag_err_cert_case", cert.uris.join(" "));
    }
    return s;
  }

  // The body of a PDF literal string, unescaped (pyHanko writes /Reason, /T this way).
  const pdfString = (x) => x.replace(/\\([0-7]{1,3}|[\s\S])/g, (_, c) => /^[0-7]/.test(c)
    ? String.fromCharCode(parseInt(c, 8)) : ({ n: "\n", r: "\r", t: "\t", b: "\b", f: "\f" })[c] ?? c);
  const LITERAL = "\\(((?:\\\\[\\s\\S]|[^\\\\()])*)\\)";

  // The new signature dictionary in the prepared revision: the only one, PAdES, filling my
  // field, with the /Reason the protocol fixes; and before it exactly the certification and the
  // earlier signers' signatures.
  function checkSignatureDictionary(prepared, base, data, signer) {
    const latin = (b) => new TextDecoder("latin1").decode(b);
    const tail = latin(prepared.subarray(base.length));
    const sigs = [...tail.matchAll(/(\d+) 0 obj\s*<<((?:(?!endobj)[\s\S])*?)endobj/g)]
      .filter((m) => /\/Type\s*\/Sig\b/.test(m[2]));
    if (sigs.length !== 1) refuse("ag_err_fields", `${sigs.length} signature dictionaries`);
    const [, number, dict] = sigs[0];
    if (!/\/SubFilter\s*\/ETSI\.CAdES\.detached\b/.test(dict)) refuse("ag_err_fields", "not PAdES");
    const reason = new RegExp("/Reason\\s*" + LITERAL).exec(dict);
    const escaped = data.case_no.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    if (!reason || !new RegExp(`^Signed ${escaped} v${data.version}; ledger ([0-9a-f]{64}|)$`).test(pdfString(reason[1]))) {
      refuse("ag_err_fields", `reason ${reason && pdfString(reason[1])}`);
    }
    const fields = [...tail.matchAll(/(\d+) 0 obj\s*<<((?:(?!endobj)[\s\S])*?)endobj/g)]
      .filter((m) => new RegExp(`/V\\s+${number}\\s+0\\s+R\\b`).test(m[2]));
    const names = fields.map((m) => { const x = new RegExp("/T\\s*" + LITERAL).exec(m[2]); return x && pdfString(x[1]); });
    if (names.length !== 1 || names[0] !== signer.field) refuse("ag_err_fields", `field ${names}`);
    const earlier = signingOrder(data).findIndex((x) => x.pid === signer.pid);
    const before = (latin(base).match(/\/ByteRange\s*\[/g) || []).length;
    if (before !== 1 + earlier) refuse("ag_err_fields", `${before} signatures before mine`);
  }

  // content-type id-data, commitment proof-of-approval, algorithm protection SHA-256 + ECDSA.
  function checkAttributeValues(der, byType) {
    const ct = byType.get(asn1.OID.contentType);
    if (!ct || asn1.oid(der, ct) !== ID_DATA) refuse("ag_err_fields", "content-type");
    const commitment = byType.get(asn1.OID.commitmentType);
    let kind = "";
    try { kind = asn1.oid(der, asn1.children(der, commitment)[0]); } catch (e) { kind = ""; }
    if (kind !== PROOF_OF_APPROVAL) refuse("ag_err_fields", "commitment type");
    const protection = byType.get(asn1.OID.cmsAlgorithmProtection);
    if (protection) {
      let digest = "", signature = "";
      try {
        const [d, sAlg] = asn1.children(der, protection);
        digest = asn1.oid(der, asn1.children(der, d)[0]);
        signature = sAlg && sAlg.tag === 0xa1 ? asn1.oid(der, asn1.children(der, sAlg)[0]) : "";
      } catch (e) { digest = ""; }
      if (digest !== SHA256 || signature !== ECDSA_SHA256) refuse("ag_err_fields", "algorithm protection");
    }
  }

  // -- the signer's checks (esign/phone.py PythonPhone.check, in the browser) ---------------------
  async function checkRequest(req, ctx) {
    const prepared = unb64(req.prepared_pdf);
    const base = ctx.reviewed;
    if (req.reviewed_base_len !== base.length || req.reviewed_base_sha256 !== hex(await sha256(base)) ||
        !equal(prepared.subarray(0, base.length), base)) refuse("ag_err_not_extension");
    if (req.fingerprint !== ctx.fingerprint) refuse("ag_err_fingerprint");
    const data = ctx.data;
    if (req.case_no !== data.case_no || req.version !== data.version || req.field_name !== ctx.signer.field) {
      refuse("ag_err_fields", `${req.case_no} v${req.version} ${req.field_name}`);
    }
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
    checkAttributeValues(attrsDer, byType);
    checkSignatureDictionary(prepared, base, data, ctx.signer);
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
      mine.root = invitedRoot();
      const leaf = await checkChain(mine.certificate, enrolment.chain, mine.root);

      step(t("ag_step_review"));
      mine.reviewed = await download("agreement.pdf");
      if (a.pdf_sha256 && hex(await sha256(mine.reviewed)) !== a.pdf_sha256) refuse("ag_err_pdf_hash");
      const shown = await renderPdf(mine.reviewed, $("ag-review-pages"));
      mine.fingerprint = await fingerprintOf(shown);
      if (mine.fingerprint !== a.fingerprint) refuse("ag_err_fingerprint");
      mine.data = shown.data;
      mine.signer = checkIdentity(leaf, mine.data, P.me);
      checkPageText(shown, mine.fingerprint, a.terms);

      step(t("ag_step_prepare"));
      const { request: req } = await emit("esign", { action: "prepare" });
      const { prepared, attrsDer } = await checkRequest(req, mine);
      // Show the person the exact bytes they will sign, and compare them with what they read.
      const again = await renderPdf(prepared, $("ag-review-pages"));
      if (await fingerprintOf(again) !== mine.fingerprint) refuse("ag_err_fingerprint");
      if (again.texts.length !== shown.texts.length || again.texts.some((x, i) => x !== shown.texts[i])) {
        refuse("ag_err_pages_differ");
      }
      checkPageText(again, mine.fingerprint, a.terms);
      if (attempt !== mine) return;
      mine.request = req; mine.attrsDer = attrsDer;
      $("ag-review-fingerprint").textContent = `${t("ag_fp_full")} ${groups(mine.fingerprint)}`;
      $("ag-review-code").textContent = checkCode(mine.fingerprint);
      $("ag-review-code").dataset.code = checkCode(mine.fingerprint);
      const rootLine = $("ag-review-root");
      rootLine.dataset.root = mine.root ? "checked" : "missing";
      rootLine.dataset.t = mine.root ? "ag_root_ok" : "ag_root_missing";
      rootLine.textContent = t(rootLine.dataset.t);
      rootLine.classList.toggle("ag-root-missing", !mine.root);
      $("ag-review").hidden = false;
      $("ag-confirm").disabled = false;
      step(t("ag_step_confirm"));
      $("ag-review").scrollIntoView({ block: "start" });
    } catch (e) {
      if (attempt === mine) attempt = null;
      lastError = e.message;
      step(say(e), e instanceof Refusal);
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
      step(say(e));
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
    try { await emit("esign", { action: "decline", reason }); step(t("ag_declined_you")); } catch (err) { lastError = err.message; step(say(err)); }
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
      $("ag-editor-status").textContent = say(e);
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
    const { fp, matches, textOk } = shownFp;
    const key = [fp, matches, textOk, i18n.lang].join();
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
    if (!textOk) parts.push(el("span", "status refused ag-text-differs", " ≠ " + t("ag_err_pages_text")));
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
        // Everyone (the mediator first) sees it when the pages do not say what the data says.
        let textOk = true;
        try { checkPageText(rendered, fp, null); } catch (err) {
          if (!(err instanceof Refusal)) throw err;
          textOk = false;
          lastError = err.message;
        }
        shownFp = { fp, matches: fp === a.fingerprint, textOk };
        drawFingerprint();
        $("ag-fingerprint").dataset.fingerprint = fp;
        $("ag-fingerprint").dataset.text = textOk ? "same" : "differs";
        shownText = rendered.texts.join("\n");
        P.render();  // the agreement now names signers who are not in this person's room
      } catch (e) {
        lastError = e.message;
        $("ag-fingerprint").textContent = say(e);
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
    try { save(await download("agreement.pdf"), "agreement.pdf", "application/pdf"); } catch (e) { lastError = e.message; step(say(e)); }
  };
  $("ag-download-evidence").onclick = async () => {
    try { save(await download("evidence.zip"), "evidence.zip", "application/zip"); } catch (e) { lastError = e.message; $("ag-editor-status").textContent = say(e); }
  };
  // -- the session has ended: the sealed agreement stays downloadable from the end screen ------
  // (the PDF route serves the participants of an ended session; app.js shows the screen)
  let endPdf = null;  // the sealed PDF fetched for an end screen opened without a view
  async function endScreen() {
    const a = (P.view && P.view.agreement) || {};
    const ended = !$("screen-end").hidden && $("end-title").dataset.t === "ended_title";
    $("end-agreement").hidden = !(ended && a.status === "sealed");
    if (!ended || P.view || endPdf) return;
    // The link opened again after the end (no view): offer the PDF if the session's agreement
    // was sealed — only the seal adds a document timestamp (/SubFilter /ETSI.RFC3161).
    try {
      const bytes = await download("agreement.pdf");
      if (!new TextDecoder("latin1").decode(bytes).includes("/ETSI.RFC3161")) return;
      endPdf = bytes;
      $("end-agreement").hidden = false;
    } catch (e) { lastError = e.message; }  // nothing frozen, or not for this person: no offer
  }
  new MutationObserver(endScreen).observe($("screen-end"), { attributes: true, attributeFilter: ["hidden"] });
  endScreen();
  $("end-download").onclick = async () => {
    try {
      save(endPdf || await download("agreement.pdf"), "agreement.pdf", "application/pdf");
    } catch (e) {
      lastError = e.message;
      $("end-agreement-text").textContent = say(e);
    }
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
    }).catch((e) => { lastError = e.message; $("ag-viewer-page").textContent = say(e); });
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
