// keygate admin page: the parts that need the admin API — checking a
// policy while it is typed (with a preview of what it changes), saving it,
// explain, diffs, rollback and the user actions. The page itself is
// rendered on the server and readable without this script. No build step;
// served under the page's CSP (script-src 'self'). Every text shown comes
// from the page (data-msg-*), already translated.

const api = "/.keygate/api/admin/";

async function call(method, path, body, headers) {
  const h = { "Accept": "application/json", ...(headers || {}) };
  if (body !== undefined) h["Content-Type"] = "application/json";
  const resp = await fetch(api + path, {
    method, headers: h, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = {};
  try { data = await resp.json(); } catch { /* an empty or non-JSON answer */ }
  if (!resp.ok) {
    const err = new Error(data.message || resp.statusText);
    err.status = resp.status;
    err.code = data.error || "unknown";
    err.data = data;
    throw err;
  }
  return data;
}

// fmt fills %d and %s in a translated template, in order.
function fmt(template, ...args) {
  let i = 0;
  return (template || "").replace(/%[ds]/g, () => String(args[i++] ?? ""));
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
}

// showDiff renders a unified diff with a class per line kind (text only:
// nothing from the server is ever parsed as HTML).
function showDiff(pre, diff) {
  pre.replaceChildren();
  for (const line of (diff || "").split("\n")) {
    let cls = "ctx";
    if (line.startsWith("@@")) cls = "hunk";
    else if (line.startsWith("+++") || line.startsWith("---")) cls = "file";
    else if (line.startsWith("+")) cls = "add";
    else if (line.startsWith("-")) cls = "del";
    pre.append(el("span", { class: cls }, line + "\n"));
  }
  pre.hidden = false;
}

// arm asks for a second click instead of a modal dialog: the first click
// shows the question and turns the button into "confirm".
function armed(button, status, question) {
  if (button.dataset.armed === "1") {
    delete button.dataset.armed;
    return true;
  }
  button.dataset.armed = "1";
  button.classList.add("armed");
  if (status) status.textContent = question;
  return false;
}

const root = document.getElementById("admin");
if (root) {
  const msg = root.dataset;
  let base = parseInt(msg.version, 10);
  const yaml = document.getElementById("policy-yaml");
  const comment = document.getElementById("policy-comment");
  const status = document.getElementById("policy-status");
  const problems = document.getElementById("policy-problems");
  const preview = document.getElementById("policy-preview");
  const overwrite = document.getElementById("policy-overwrite");

  const showProblems = (err) => {
    preview.hidden = true;
    const list = problems.querySelector("ul");
    list.replaceChildren();
    const ps = (err.data && err.data.problems) || [];
    document.getElementById("policy-problems-head").textContent = ps.length ? fmt(msg.msgInvalid, ps.length) : err.message;
    for (const p of ps) {
      const where = p.rule_name ? `${p.path} (${p.rule_name})` : p.path;
      list.append(el("li", { "data-path": p.path }, el("code", {}, where), ": " + p.message));
    }
    problems.hidden = false;
  };

  const showPreview = (res) => {
    problems.hidden = true;
    status.textContent = fmt(msg.msgValid, res.rules);
    const summary = document.getElementById("preview-summary");
    summary.replaceChildren();
    const pv = res.preview;
    if (!pv.summary.length) summary.append(el("li", {}, msg.msgPreviewNone));
    for (const s of pv.summary) summary.append(el("li", {}, fmt(msg.msgPreviewSummary, s.paths, s.from, s.to)));
    if (pv.truncated) summary.append(el("li", {}, msg.msgPreviewTruncated));
    const body = document.querySelector("#preview-table tbody");
    body.replaceChildren();
    for (const c of pv.changes) {
      const who = (c.who && c.who.length ? c.who.join(", ") : msg.msgAny) + (c.sources && c.sources.length ? " · " + c.sources.join(", ") : "");
      body.append(el("tr", {},
        el("td", {}, c.host), el("td", {}, el("code", {}, c.path)),
        el("td", {}, c.methods && c.methods.length ? c.methods.join(", ") : msg.msgAny), el("td", {}, who),
        el("td", {}, `${c.from} (${c.from_rule})`), el("td", {}, `${c.to} (${c.to_rule})`)));
    }
    showDiff(document.getElementById("preview-diff"), res.diff);
    preview.hidden = false;
  };

  let seq = 0;
  const check = async () => {
    const mine = ++seq;
    try {
      const res = await call("POST", "policy/check", { yaml: yaml.value });
      if (mine === seq) showPreview(res);
    } catch (err) {
      if (mine === seq) showProblems(err);
    }
  };

  let timer;
  yaml.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(check, 400);
  });
  document.getElementById("policy-check").addEventListener("click", check);

  const save = async () => {
    overwrite.hidden = true;
    try {
      const res = await call("PUT", "policy", { yaml: yaml.value, comment: comment.value }, { "If-Match": `"${base}"` });
      if (res.unchanged) {
        status.textContent = msg.msgUnchanged;
        return;
      }
      status.textContent = fmt(msg.msgSaved, res.version);
      window.location.assign("/.keygate/admin?saved=" + res.version + "#policy");
    } catch (err) {
      if (err.status === 412) {
        // Someone else saved meanwhile. The text stays as it is; their
        // change is shown, and saving over it is an explicit choice.
        const current = err.data.current_version;
        status.textContent = fmt(msg.msgConflict, current);
        try {
          const d = await call("GET", `policy/diff?from=${base}&to=${current}`);
          showDiff(document.getElementById("preview-diff"), d.diff);
          preview.hidden = false;
          document.querySelector("#policy-preview details").open = true;
        } catch { /* the message alone still says what happened */ }
        overwrite.textContent = fmt(msg.msgOverwrite, current);
        overwrite.hidden = false;
        overwrite.onclick = () => { base = current; overwrite.hidden = true; save(); };
        return;
      }
      showProblems(err);
    }
  };
  document.getElementById("policy-save").addEventListener("click", save);

  // History: diffs and restores.
  const hStatus = document.getElementById("history-status");
  document.getElementById("history-table").addEventListener("click", async (ev) => {
    const b = ev.target.closest("button");
    if (!b) return;
    try {
      if (b.dataset.diff) {
        const v = parseInt(b.dataset.diff, 10);
        const d = await call("GET", `policy/diff?from=${v - 1}&to=${v}`);
        showDiff(document.getElementById("history-diff"), d.diff);
      } else if (b.dataset.restore) {
        const v = parseInt(b.dataset.restore, 10);
        if (!armed(b, hStatus, fmt(msg.msgConfirmRestore, v))) return;
        const res = await call("POST", "policy/rollback", { version: v }, { "If-Match": `"${base}"` });
        hStatus.textContent = fmt(msg.msgRestored, v, res.version);
        window.location.assign("/.keygate/admin?restored=" + res.version + "#history");
      }
    } catch (err) {
      hStatus.textContent = err.message || msg.msgUnknown;
    }
  });

  // Explain.
  const form = document.getElementById("explain-form");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const out = document.getElementById("explain-out");
    const errBox = document.getElementById("explain-error");
    errBox.hidden = true;
    const f = new FormData(form);
    const groups = (f.get("groups") || "").split(",").map((g) => g.trim()).filter(Boolean);
    const body = {
      method: f.get("method"), url: f.get("url"), user: f.get("user"), source_ip: f.get("source_ip"),
      factor_age: f.get("factor_age"), factors: f.getAll("factors"),
    };
    if (groups.length) body.groups = groups;
    try {
      const res = await call("POST", "explain", body);
      out.textContent = res.text;
      out.dataset.outcome = res.decision.outcome;
      out.hidden = false;
    } catch (err) {
      out.hidden = true;
      errBox.textContent = err.data && err.data.detail ? err.data.detail : err.message;
      errBox.hidden = false;
    }
  });
}

const userRoot = document.getElementById("admin-user");
if (userRoot) {
  const msg = userRoot.dataset;
  const result = document.getElementById("user-result");
  const errBox = document.getElementById("user-error");
  const name = encodeURIComponent(msg.user);
  for (const b of userRoot.querySelectorAll("button[data-action]")) {
    b.addEventListener("click", async () => {
      errBox.hidden = true;
      const action = b.dataset.action;
      if (action === "reset-factors" && !armed(b, result, msg.msgConfirmReset)) return;
      if (action === "disable" && !armed(b, result, msg.msgConfirmDisable)) return;
      b.disabled = true;
      try {
        const res = await call("POST", `users/${name}/${action}`, {});
        if (action === "enroll-link") {
          result.replaceChildren(fmt(msg.msgLink, msg.user, new Date(res.expires_at).toLocaleString()), " ",
            el("code", { id: "enroll-link" }, res.url));
          b.disabled = false;
          return;
        }
        result.textContent = msg.msgDone;
        window.location.reload();
      } catch (err) {
        errBox.textContent = err.message || msg.msgUnknown;
        errBox.hidden = false;
        b.disabled = false;
      }
    });
  }
}
