// keygate portal: progressive enhancement for the pages that need the
// browser (security keys) or feel better with it (the resend countdown).
// No build step; served under the page's CSP (script-src 'self').
import { register, authenticate } from "./webauthn.js";

const api = "/.keygate/api/factors/";

async function post(path, body) {
  const resp = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", "Accept": "application/json" },
    credentials: "same-origin",
    body: JSON.stringify(body ?? {}),
  });
  let data = {};
  try { data = await resp.json(); } catch { /* an empty or non-JSON answer */ }
  if (!resp.ok) {
    const err = new Error(data.message || resp.statusText);
    err.code = data.error || "unknown";
    err.serverMessage = data.message;
    throw err;
  }
  return data;
}

// message picks what to tell the person for an error: the server's own
// message, else the page's translation of the browser error's code.
function message(box, err) {
  if (err.serverMessage) return err.serverMessage;
  const key = "msg" + (err.code || "unknown").replace(/(^|_)(\w)/g, (_, __, c) => c.toUpperCase());
  return box.dataset[key] || box.dataset.msgUnknown || String(err);
}

function show(el, text) {
  el.textContent = text;
  el.hidden = false;
}

const login = document.getElementById("webauthn-login");
if (login) {
  const start = document.getElementById("webauthn-start");
  const errBox = document.getElementById("webauthn-error");
  const run = async () => {
    errBox.hidden = true;
    start.disabled = true;
    try {
      const begin = await post(api + "webauthn/login/begin");
      const credential = await authenticate(begin.publicKey);
      const remember = document.getElementById("remember");
      const done = await post(api + "webauthn/login/finish", {
        ceremony: begin.ceremony, credential, rd: login.dataset.rd, remember: !!(remember && remember.checked),
      });
      window.location.assign(done.redirect);
    } catch (err) {
      show(errBox, message(login, err));
      start.disabled = false;
    }
  };
  start.addEventListener("click", run);
}

const enroll = document.getElementById("webauthn-enroll");
if (enroll) {
  const errBox = document.getElementById("enroll-error");
  for (const button of enroll.querySelectorAll("button[data-kind]")) {
    button.addEventListener("click", async () => {
      errBox.hidden = true;
      button.disabled = true;
      try {
        const begin = await post(api + "webauthn/enroll/begin", { kind: button.dataset.kind });
        const credential = await register(begin.publicKey);
        const name = document.getElementById("key-name").value;
        await post(api + "webauthn/enroll/finish", { ceremony: begin.ceremony, credential, name });
        window.location.assign("/.keygate/settings?done=key_added");
      } catch (err) {
        show(errBox, message(enroll, err));
        button.disabled = false;
      }
    });
  }
}

const passkey = document.getElementById("passkey-login");
if (passkey) {
  const errBox = document.getElementById("passkey-error");
  passkey.hidden = !window.PublicKeyCredential;
  passkey.addEventListener("click", async () => {
    errBox.hidden = true;
    try {
      const begin = await post(api + "webauthn/passkey/begin");
      const credential = await authenticate(begin.publicKey);
      const done = await post(api + "webauthn/passkey/finish", { ceremony: begin.ceremony, credential, rd: passkey.dataset.rd });
      window.location.assign(done.redirect);
    } catch (err) {
      show(errBox, message(passkey, err));
    }
  });
}

// The resend countdown: the server already disabled the button and said
// how long to wait; here the number counts down and the button wakes up.
const resend = document.getElementById("resend");
if (resend && resend.dataset.resendIn) {
  const hint = document.getElementById("resend-hint");
  let left = parseInt(resend.dataset.resendIn, 10);
  // The sentence and the unit's plural forms come from the catalogue, so
  // the countdown stays grammatical ("2 секунды", "1 секунду").
  const sentence = hint ? hint.dataset.sentence : "";
  const units = hint ? JSON.parse(hint.dataset.units || "{}") : {};
  const rules = new Intl.PluralRules(document.documentElement.lang || "en");
  const say = (n) => sentence.replace("%s", (units[rules.select(n)] || units.other || "%d").replace("%d", String(n)));
  const tick = setInterval(() => {
    left -= 1;
    if (left <= 0) {
      clearInterval(tick);
      resend.disabled = false;
      if (hint) hint.hidden = true;
      return;
    }
    if (hint && sentence) hint.textContent = say(left);
  }, 1000);
}

// A form that met a sign-in or step-up is sent on as soon as the person
// is through (the page only exists right after that).
const resumeForm = document.getElementById("resume-form");
if (resumeForm) resumeForm.submit();

// The password reset's second factor with a security key (password.go):
// the same ceremony as a sign-in's, under the reset's own routes.
const resetKey = document.getElementById("reset-webauthn");
if (resetKey) {
  const start = document.getElementById("reset-webauthn-start");
  const errBox = document.getElementById("reset-webauthn-error");
  const base = "/.keygate/api/password/reset/factor/webauthn/";
  start.addEventListener("click", async () => {
    errBox.hidden = true;
    start.disabled = true;
    try {
      const begin = await post(base + "begin");
      const credential = await authenticate(begin.publicKey);
      await post(base + "verify", { ceremony: begin.ceremony, credential });
      window.location.assign("/.keygate/password/reset");
    } catch (err) {
      show(errBox, message(resetKey, err));
      start.disabled = false;
    }
  });
}
