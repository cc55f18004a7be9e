// The static verification page (/verify): checks a signed agreement PDF entirely in the
// browser against the organisation's root fingerprint — no upload, no network. For every
// signature (signers, seal, document timestamps): the ByteRange covers the file except its own
// hole; the CMS messageDigest (or the timestamp's message imprint) is the SHA-256 of those
// bytes; the signature value verifies (WebCrypto ECDSA) with the signer certificate; that
// certificate chains, signature by signature, to a certificate whose SHA-256 is the given root
// fingerprint. The last signature must be a document timestamp covering the whole file.
// What it does not check (revocation, long-term validation, page/data binding) is said on
// the page; `python server.py verify` does all of it.
(function () {
  const $ = (id) => document.getElementById(id);
  const A = window.asn1;
  const OIDS = { signedData: "1.2.840.113549.1.7.2", tstInfo: "1.2.840.113549.1.9.16.1.4" };

  const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  const equal = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
  const digest = async (name, bytes) => new Uint8Array(await crypto.subtle.digest(name, bytes));
  class Invalid extends Error {}
  const need = (ok, why) => { if (!ok) throw new Invalid(why); };

  // Every signature dictionary: its /ByteRange and the /Contents hole it names.
  function signatures(pdf) {
    const text = new TextDecoder("latin1").decode(pdf);
    const found = [];
    const re = /\/ByteRange\s*\[\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\]/g;
    for (let m; (m = re.exec(text));) {
      const [start, a, b, c] = m.slice(1).map(Number);
      need(start === 0 && a < b && b + c <= pdf.length, "malformed ByteRange");
      const hole = text.slice(a, b);
      need(/^<[0-9a-fA-F]*>$/.test(hole), "the signature hole is not a hex string");
      const bytes = Uint8Array.from(hole.slice(1, -1).match(/../g) || [], (h) => parseInt(h, 16));
      found.push({ range: [start, a, b, c], cms: bytes });
    }
    return found;
  }

  // The parts of a CMS SignedData this page needs.
  function parseCms(der) {
    const content = A.read(der);  // trailing zero padding after the DER is allowed
    const [type, wrapped] = A.children(der, content);
    need(A.oid(der, type) === OIDS.signedData, "not CMS SignedData");
    const fields = A.children(der, A.children(der, wrapped)[0]);
    const encap = A.children(der, fields[2]);
    const eType = A.oid(der, encap[0]);
    const eContent = encap[1] ? A.content(der, A.children(der, encap[1])[0]) : null;
    const certs = [];
    let i = 3;
    if (fields[i].tag === 0xa0) { for (const c of A.children(der, fields[i])) certs.push(A.whole(der, c)); i++; }
    if (fields[i].tag === 0xa1) i++;
    const [signer] = A.children(der, fields[i]);
    const parts = A.children(der, signer);
    const attrs = parts[3];
    need(attrs.tag === 0xa0, "no signed attributes");
    const signedAttrs = Uint8Array.from(A.whole(der, attrs)); signedAttrs[0] = 0x31;  // as signed: SET OF
    const algorithm = A.oid(der, A.children(der, parts[4])[0]);
    return { eType, eContent, certs, signedAttrs, algorithm, signature: A.content(der, parts[5]),
      sid: A.whole(der, parts[1]) };
  }

  // Certificates and ECDSA checks are asn1.js's (shared with the signing page).
  const certInfo = (der) => A.certificate(Uint8Array.from(der));
  const verifySig = (keyCert, algorithm, signature, data) => A.verifyWith(keyCert, algorithm, signature, data);

  // The signer certificate (matched by issuer and serial) and its chain up to the root.
  async function chainToRoot(cms, root) {
    const certs = cms.certs.map(certInfo);
    const sid = hex(cms.sid);
    let leaf = certs.find((c) => sid.includes(c.serial) && sid.includes(c.issuer));
    need(leaf, "the signer certificate is not in the signature");
    for (let cert = leaf, depth = 0; depth < 5; depth++) {
      if (hex(await digest("SHA-256", cert.der)) === root) return leaf;
      const issuer = certs.find((c) => c.subject === cert.issuer);
      need(issuer, "the chain does not reach the organisation's root");
      need(await verifySig(issuer, cert.algorithm, cert.signature, cert.tbs), "a certificate signature is wrong");
      cert = issuer;
    }
    throw new Invalid("the chain does not reach the organisation's root");
  }

  function attribute(der, type) {
    for (const a of A.signedAttributes(der)) if (a.type === type) return A.content(der, a.values[0]);
    return null;
  }

  async function check(pdf, root) {
    const sigs = signatures(pdf);
    need(sigs.length > 0, "no signatures");
    const lines = [];
    for (const [n, sig] of sigs.entries()) {
      const [, a, b, c] = sig.range;
      const covered = new Uint8Array(a + c);
      covered.set(pdf.subarray(0, a)); covered.set(pdf.subarray(b, b + c), a);
      const cms = parseCms(sig.cms);
      const md = attribute(cms.signedAttrs, A.OID.messageDigest);
      need(md, "no messageDigest");
      const hash = await digest("SHA-256", covered);
      if (cms.eType === OIDS.tstInfo) {  // a document timestamp: the token names the bytes
        need(equal(md, await digest("SHA-256", cms.eContent)), `signature ${n + 1}: timestamp token altered`);
        need(hex(cms.eContent).includes(hex(hash)), `signature ${n + 1}: the file changed after the timestamp`);
      } else {
        need(equal(md, hash), `signature ${n + 1}: the signed bytes changed`);
      }
      const signer = await chainToRoot(cms, root);
      need(await verifySig(signer, cms.algorithm, cms.signature, cms.signedAttrs), `signature ${n + 1}: the signature value is wrong`);
      lines.push(`${n + 1}. ${cms.eType === OIDS.tstInfo ? "document timestamp" : "signature"} ✔`);
    }
    const last = sigs[sigs.length - 1];
    need(last.range[2] + last.range[3] === pdf.length, "bytes were added after the last signature");
    need(parseCms(last.cms).eType === OIDS.tstInfo, "the file does not end with a document timestamp");
    return lines;
  }

  // A link from the invitation, the console or the mail may carry the root: /verify#root=<hex>
  // (a fragment: never sent to the server). The person can still change it.
  const fromLink = /(?:^#|&)root=([0-9A-Fa-f:]{64,95})(?:&|$)/.exec(location.hash || "");
  if (fromLink && !$("verify-root").value) $("verify-root").value = fromLink[1].toLowerCase().replace(/:/g, "");

  $("verify-form").onsubmit = async (e) => {
    e.preventDefault();
    const out = $("verify-result");
    const list = $("verify-checks");
    out.dataset.result = ""; out.textContent = "…"; list.replaceChildren();
    const root = $("verify-root").value.toLowerCase().replace(/[^0-9a-f]/g, "");
    try {
      need(root.length === 64, "the root fingerprint has 64 hex digits");
      const file = $("verify-file").files[0];
      need(file, "choose the PDF");
      const lines = await check(new Uint8Array(await file.arrayBuffer()), root);
      list.replaceChildren(...lines.map((x) => Object.assign(document.createElement("li"), { textContent: x })));
      out.dataset.result = "valid";
      out.textContent = "有效：所有签名完好，并可追溯至该根证书。Valid: every signature is intact and chains to this root.";
    } catch (err) {
      out.dataset.result = "invalid";
      out.textContent = "无效 Invalid: " + (err instanceof Invalid || err instanceof A.DerError ? err.message : String(err));
    }
  };
})();
