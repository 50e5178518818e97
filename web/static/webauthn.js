// keygate WebAuthn glue: turns the server's options JSON into a browser
// ceremony and the resulting credential back into JSON for the server.
//
// No build step and no inline script: served as an ES module under the
// page's CSP (script-src 'self'). The server sends the `publicKey` member
// of the creation/request options exactly as
// PublicKeyCredential.parseCreationOptionsFromJSON / parseRequestOptionsFromJSON
// take it, and wants back what credential.toJSON() returns. Older browsers
// without those methods get the same through a base64url fallback.
//
// Every failure is thrown as a WebAuthnError whose `code` is one of the
// stable codes below, so pages pick their own (translated) message:
//   cancelled          the person dismissed the prompt or no authenticator answered (NotAllowedError, AbortError)
//   timeout            the ceremony ran out of time
//   already_registered this authenticator is already enrolled (InvalidStateError)
//   not_supported      no WebAuthn here, or nothing suitable (NotSupportedError)
//   security           the page's origin does not fit the RP ID (SecurityError)
//   unknown            anything else

export class WebAuthnError extends Error {
  constructor(code, message, cause) {
    super(message || code, cause ? { cause } : undefined);
    this.name = "WebAuthnError";
    this.code = code;
  }
}

// isSupported tells whether this browser can run a WebAuthn ceremony.
export function isSupported() {
  return typeof window !== "undefined" && !!window.PublicKeyCredential &&
    !!navigator.credentials && typeof navigator.credentials.create === "function";
}

// platformAvailable tells whether a platform authenticator (Touch ID,
// Windows Hello, Android) can verify the user here; false when unknown.
export async function platformAvailable() {
  if (!isSupported() || typeof PublicKeyCredential.isUserVerifyingPlatformAuthenticatorAvailable !== "function") {
    return false;
  }
  try {
    return await PublicKeyCredential.isUserVerifyingPlatformAuthenticatorAvailable();
  } catch {
    return false;
  }
}

// register runs navigator.credentials.create with the server's creation
// options and returns the credential's JSON (credential.toJSON()).
export async function register(optionsJSON) {
  const json = unwrap(optionsJSON);
  const publicKey = parseOptions(json, "parseCreationOptionsFromJSON", creationFromJSON);
  const credential = await run(json, (signal) => navigator.credentials.create({ publicKey, signal }));
  return toJSON(credential);
}

// authenticate runs navigator.credentials.get with the server's request
// options and returns the assertion's JSON (credential.toJSON()).
export async function authenticate(optionsJSON) {
  const json = unwrap(optionsJSON);
  const publicKey = parseOptions(json, "parseRequestOptionsFromJSON", requestFromJSON);
  const credential = await run(json, (signal) => navigator.credentials.get({ publicKey, signal }));
  return toJSON(credential);
}

// unwrap accepts the options as an object or a JSON string, and tolerates
// the whole CredentialCreation/CredentialAssertion ({publicKey: …}).
function unwrap(optionsJSON) {
  let json = optionsJSON;
  if (typeof json === "string") {
    try {
      json = JSON.parse(json);
    } catch (err) {
      throw new WebAuthnError("unknown", "options are not JSON", err);
    }
  }
  if (json && typeof json === "object" && json.publicKey && !json.challenge) json = json.publicKey;
  if (!json || typeof json !== "object" || typeof json.challenge !== "string") {
    throw new WebAuthnError("unknown", "options without a challenge");
  }
  return json;
}

function parseOptions(json, method, fallback) {
  if (!isSupported()) throw new WebAuthnError("not_supported", "WebAuthn is not available in this browser");
  try {
    if (typeof PublicKeyCredential[method] === "function") return PublicKeyCredential[method](json);
    return fallback(json);
  } catch (err) {
    throw mapError(err);
  }
}

// run calls the browser with an abort signal of our own, so that running
// out of time is told apart from the person cancelling (browsers report
// both as NotAllowedError).
async function run(json, call) {
  const ms = Number.isFinite(json.timeout) && json.timeout > 0 ? json.timeout : 300000;
  const ctrl = new AbortController();
  const start = Date.now();
  let timedOut = false;
  const timer = setTimeout(() => { timedOut = true; ctrl.abort(); }, ms);
  try {
    const credential = await call(ctrl.signal);
    if (!credential) throw new WebAuthnError("cancelled", "no credential returned");
    return credential;
  } catch (err) {
    // The browser's own timer (set from the same timeout) may fire just
    // before ours and report NotAllowedError: near the deadline, that is a
    // timeout too.
    const late = err && err.name === "NotAllowedError" && Date.now() - start >= ms - 1000;
    if (timedOut || late) throw new WebAuthnError("timeout", "the security key prompt timed out", err);
    throw mapError(err);
  } finally {
    clearTimeout(timer);
  }
}

function mapError(err) {
  if (err instanceof WebAuthnError) return err;
  const name = err && err.name;
  const code = {
    NotAllowedError: "cancelled",
    AbortError: "cancelled",
    InvalidStateError: "already_registered",
    NotSupportedError: "not_supported",
    SecurityError: "security",
  }[name] || "unknown";
  return new WebAuthnError(code, err && err.message, err);
}

// toJSON is credential.toJSON(), or the same shape built by hand.
function toJSON(credential) {
  if (typeof credential.toJSON === "function") {
    try {
      return credential.toJSON();
    } catch {
      // Some implementations throw on extension outputs they cannot
      // serialise; fall through to the manual form.
    }
  }
  const r = credential.response;
  const out = {
    id: credential.id,
    rawId: b64url(credential.rawId),
    type: credential.type,
    authenticatorAttachment: credential.authenticatorAttachment || undefined,
    clientExtensionResults: extensionsJSON(credential.getClientExtensionResults ? credential.getClientExtensionResults() : {}),
    response: { clientDataJSON: b64url(r.clientDataJSON) },
  };
  if (r.attestationObject) {
    out.response.attestationObject = b64url(r.attestationObject);
    if (typeof r.getTransports === "function") out.response.transports = r.getTransports();
    if (typeof r.getAuthenticatorData === "function") out.response.authenticatorData = b64url(r.getAuthenticatorData());
    if (typeof r.getPublicKeyAlgorithm === "function") out.response.publicKeyAlgorithm = r.getPublicKeyAlgorithm();
    if (typeof r.getPublicKey === "function") {
      const pk = r.getPublicKey();
      if (pk) out.response.publicKey = b64url(pk);
    }
  } else {
    out.response.authenticatorData = b64url(r.authenticatorData);
    out.response.signature = b64url(r.signature);
    if (r.userHandle) out.response.userHandle = b64url(r.userHandle);
  }
  return out;
}

// extensionsJSON encodes the binary members of extension outputs (PRF
// results, large blobs) as base64url, like toJSON does.
function extensionsJSON(value) {
  if (value instanceof ArrayBuffer || ArrayBuffer.isView(value)) return b64url(value);
  if (Array.isArray(value)) return value.map(extensionsJSON);
  if (value && typeof value === "object") {
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = extensionsJSON(v);
    return out;
  }
  return value;
}

function creationFromJSON(json) {
  const o = { ...json, challenge: unb64url(json.challenge), user: { ...json.user, id: unb64url(json.user.id) } };
  if (json.excludeCredentials) o.excludeCredentials = json.excludeCredentials.map(descriptor);
  return o;
}

function requestFromJSON(json) {
  const o = { ...json, challenge: unb64url(json.challenge) };
  if (json.allowCredentials) o.allowCredentials = json.allowCredentials.map(descriptor);
  return o;
}

function descriptor(d) {
  return { ...d, id: unb64url(d.id) };
}

function b64url(buf) {
  const bytes = buf instanceof ArrayBuffer ? new Uint8Array(buf) : new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function unb64url(s) {
  if (typeof s !== "string") throw new WebAuthnError("unknown", "expected a base64url string");
  const b64 = s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4);
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out.buffer;
}
