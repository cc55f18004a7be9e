// A small DER reader for the signing page and the /verify page: just enough ASN.1 to look inside
// the signed attributes the server asks the phone to sign and inside certificates (chain to the
// organisation's root, the names a signing certificate carries). It reads, never
// writes, and throws on anything that is not strict, definite-length DER of the expected shape.
(function () {
  const OID = {
    contentType: "1.2.840.113549.1.9.3",
    messageDigest: "1.2.840.113549.1.9.4",
    signingTime: "1.2.840.113549.1.9.5",
    signingCertificateV2: "1.2.840.113549.1.9.16.2.47",
    commitmentType: "1.2.840.113549.1.9.16.2.16",
    cmsAlgorithmProtection: "1.2.840.113549.1.9.52",
    sha256: "2.16.840.1.101.3.4.2.1",
  };

  class DerError extends Error {}

  // One TLV at `pos`: {tag, start (first byte of the TLV), body (first content byte), end}.
  function read(bytes, pos = 0, limit = bytes.length) {
    if (pos + 2 > limit) throw new DerError("truncated DER");
    const tag = bytes[pos];
    if ((tag & 0x1f) === 0x1f) throw new DerError("multi-byte tags are not used here");
    let len = bytes[pos + 1];
    let body = pos + 2;
    if (len & 0x80) {
      const n = len & 0x7f;
      if (n === 0 || n > 4) throw new DerError("indefinite or oversized length");
      if (body + n > limit) throw new DerError("truncated DER length");
      len = 0;
      for (let i = 0; i < n; i++) len = len * 256 + bytes[body + i];
      body += n;
    }
    const end = body + len;
    if (end > limit) throw new DerError("DER element runs past its container");
    return { tag, start: pos, body, end };
  }

  // The elements inside a constructed element (SEQUENCE, SET, [n] EXPLICIT).
  function children(bytes, node) {
    if (!(node.tag & 0x20)) throw new DerError("not a constructed element");
    const out = [];
    for (let pos = node.body; pos < node.end;) {
      const child = read(bytes, pos, node.end);
      out.push(child);
      pos = child.end;
    }
    return out;
  }

  function expect(node, tag, what) {
    if (node.tag !== tag) throw new DerError(`${what}: expected tag 0x${tag.toString(16)}`);
    return node;
  }

  function oid(bytes, node) {
    expect(node, 0x06, "OBJECT IDENTIFIER");
    const parts = [];
    let value = 0;
    for (let i = node.body; i < node.end; i++) {
      value = value * 128 + (bytes[i] & 0x7f);
      if (!(bytes[i] & 0x80)) { parts.push(value); value = 0; }
    }
    if (!parts.length) throw new DerError("empty OBJECT IDENTIFIER");
    const first = parts[0] < 80 ? Math.floor(parts[0] / 40) : 2;
    return [first, parts[0] - first * 40, ...parts.slice(1)].join(".");
  }

  function content(bytes, node) { return bytes.subarray(node.body, node.end); }
  function whole(bytes, node) { return bytes.subarray(node.start, node.end); }

  // CMS signed attributes (a SET OF Attribute): [{type: oid, values: [nodes]}]; the whole
  // input must be that one SET.
  function signedAttributes(bytes) {
    const set = expect(read(bytes), 0x31, "signed attributes");
    if (set.end !== bytes.length) throw new DerError("trailing bytes after the signed attributes");
    return children(bytes, set).map((attr) => {
      const [type, values, ...rest] = children(bytes, expect(attr, 0x30, "Attribute"));
      if (!values || rest.length) throw new DerError("malformed Attribute");
      return { type: oid(bytes, type), values: children(bytes, expect(values, 0x31, "values")) };
    });
  }

  // The certificate hash named by a signing-certificate-v2 value (its first ESSCertIDv2);
  // only SHA-256 is accepted (the default algorithm when the field is absent).
  function signingCertificateHash(bytes, value) {
    const [certs] = children(bytes, expect(value, 0x30, "SigningCertificateV2"));
    const [first] = children(bytes, expect(certs, 0x30, "certs"));
    if (!first) throw new DerError("no certificate in signing-certificate-v2");
    const fields = children(bytes, expect(first, 0x30, "ESSCertIDv2"));
    let i = 0;
    if (fields[0] && fields[0].tag === 0x30) {
      const algorithm = oid(bytes, children(bytes, fields[0])[0]);
      if (algorithm !== OID.sha256) throw new DerError("signing-certificate-v2 is not SHA-256");
      i = 1;
    }
    return content(bytes, expect(fields[i], 0x04, "certHash"));
  }

  // The DER SubjectPublicKeyInfo of an X.509 certificate.
  function certificateSpki(bytes) {
    const cert = expect(read(bytes), 0x30, "Certificate");
    if (cert.end !== bytes.length) throw new DerError("trailing bytes after the certificate");
    const tbs = children(bytes, expect(children(bytes, cert)[0], 0x30, "TBSCertificate"));
    const offset = tbs[0].tag === 0xa0 ? 1 : 0;  // [0] version is optional
    // serial, signature, issuer, validity, subject, subjectPublicKeyInfo
    return whole(bytes, expect(tbs[offset + 5], 0x30, "SubjectPublicKeyInfo"));
  }

  // -- X.509, for the chain and identity checks of the signing page and the /verify page -------
  const X509 = {
    commonName: "2.5.4.3", serialNumber: "2.5.4.5", subjectAltName: "2.5.29.17",
    basicConstraints: "2.5.29.19", p256: "1.2.840.10045.3.1.7", p384: "1.3.132.0.34",
    ecdsaSha256: "1.2.840.10045.4.3.2", ecdsaSha384: "1.2.840.10045.4.3.3",
  };
  const CURVES = { [X509.p256]: ["P-256", 32], [X509.p384]: ["P-384", 48] };
  const HASHES = { [X509.ecdsaSha256]: "SHA-256", [X509.ecdsaSha384]: "SHA-384" };
  const hexOf = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

  // A directory string (UTF8String, PrintableString, IA5String, BMPString) as text.
  function text(bytes, node) {
    const body = content(bytes, node);
    if (node.tag === 0x0c) return new TextDecoder("utf-8", { fatal: true }).decode(body);
    if (node.tag === 0x13 || node.tag === 0x16) return new TextDecoder("latin1").decode(body);
    if (node.tag === 0x1e) return new TextDecoder("utf-16be").decode(body);
    throw new DerError("unexpected string type");
  }

  function time(bytes, node) {
    const s = new TextDecoder("latin1").decode(content(bytes, node));
    const m = (node.tag === 0x17 ? /^(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/ : /^(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/).exec(s);
    if (!m) throw new DerError("malformed certificate time");
    let year = Number(m[1]);
    if (node.tag === 0x17) year += year < 50 ? 2000 : 1900;
    return Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
  }

  // The (type, value) pairs of a Name, in order.
  function names(bytes, node) {
    const out = [];
    for (const rdn of children(bytes, expect(node, 0x30, "Name"))) {
      for (const atv of children(bytes, expect(rdn, 0x31, "RDN"))) {
        const [type, value] = children(bytes, expect(atv, 0x30, "AttributeTypeAndValue"));
        out.push({ type: oid(bytes, type), value: text(bytes, value) });
      }
    }
    return out;
  }

  // An X.509 certificate: what the chain check (signature, issuer, CA flag, validity) and the
  // identity check (subject name, serial number, SAN URIs) need.
  function certificate(bytes) {
    const cert = expect(read(bytes), 0x30, "Certificate");
    if (cert.end !== bytes.length) throw new DerError("trailing bytes after the certificate");
    const [tbs, alg, sig] = children(bytes, cert);
    const f = children(bytes, expect(tbs, 0x30, "TBSCertificate"));
    const o = f[0].tag === 0xa0 ? 1 : 0;
    const [notBefore, notAfter] = children(bytes, expect(f[o + 3], 0x30, "Validity")).map((n) => time(bytes, n));
    const spki = expect(f[o + 5], 0x30, "SubjectPublicKeyInfo");
    const keyAlg = children(bytes, children(bytes, spki)[0]);
    const info = {
      der: bytes, tbs: whole(bytes, tbs), algorithm: oid(bytes, children(bytes, alg)[0]),
      signature: content(bytes, expect(sig, 0x03, "signatureValue")).subarray(1),
      serial: hexOf(content(bytes, f[o])), issuer: hexOf(whole(bytes, f[o + 2])),
      subject: hexOf(whole(bytes, f[o + 4])), subjectNames: names(bytes, f[o + 4]),
      notBefore, notAfter, spki: whole(bytes, spki),
      curve: keyAlg[1] && keyAlg[1].tag === 0x06 ? oid(bytes, keyAlg[1]) : "",
      ca: false, uris: [],
    };
    const ext = f.slice(o + 6).find((n) => n.tag === 0xa3);
    for (const e of ext ? children(bytes, children(bytes, ext)[0]) : []) {
      const parts = children(bytes, expect(e, 0x30, "Extension"));
      const type = oid(bytes, parts[0]);
      const value = expect(parts[parts.length - 1], 0x04, "extnValue");
      const inner = read(bytes, value.body, value.end);
      if (type === X509.basicConstraints) {
        const first = children(bytes, inner)[0];
        info.ca = !!first && first.tag === 0x01 && bytes[first.body] === 0xff;
      } else if (type === X509.subjectAltName) {
        for (const g of children(bytes, inner)) {
          if (g.tag === 0x86) info.uris.push(new TextDecoder("latin1").decode(content(bytes, g)));
        }
      }
    }
    return info;
  }

  // An ECDSA signature from DER (r, s) to the fixed-size r‖s WebCrypto wants.
  function p1363(der, size) {
    const [r, s] = children(der, read(der));
    const fix = (n) => {
      let v = content(der, n);
      while (v.length > size && v[0] === 0) v = v.subarray(1);
      if (v.length > size) throw new DerError("bad ECDSA value");
      const out = new Uint8Array(size); out.set(v, size - v.length); return out;
    };
    const out = new Uint8Array(size * 2); out.set(fix(r)); out.set(fix(s), size); return out;
  }

  // Does `data` carry a valid `signature` (DER ECDSA, `algorithm` OID) by `keyCert`'s key?
  async function verifyWith(keyCert, algorithm, signature, data) {
    const curve = CURVES[keyCert.curve], hash = HASHES[algorithm];
    if (!curve || !hash) throw new DerError("unsupported algorithm");
    const key = await crypto.subtle.importKey("spki", keyCert.spki, { name: "ECDSA", namedCurve: curve[0] }, false, ["verify"]);
    return crypto.subtle.verify({ name: "ECDSA", hash }, key, p1363(signature, curve[1]), data);
  }

  // `child` was issued by `parent`: same name, and the parent's key signed it.
  async function issuedBy(child, parent) {
    return child.issuer === parent.subject && verifyWith(parent, child.algorithm, child.signature, child.tbs);
  }

  window.asn1 = { OID, X509, DerError, read, children, oid, content, whole, signedAttributes,
    signingCertificateHash, certificateSpki, certificate, p1363, verifyWith, issuedBy };
})();
