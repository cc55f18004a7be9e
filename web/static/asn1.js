// A small DER reader for the signing page: just enough ASN.1 to look inside the signed
// attributes the server asks the phone to sign and inside its own certificate. It reads, never
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

  window.asn1 = { OID, DerError, read, children, oid, content, whole, signedAttributes,
    signingCertificateHash, certificateSpki };
})();
