// Backend Secrets: the Variables page. Plain JavaScript, no build step, no inline script (CSP).
//
// Signs in through /api/session (the dashboard token becomes an HttpOnly cookie) and then calls the
// API with that cookie; every change carries the session's CSRF token in X-CSRF-Token.
// A Backend Secret's value only ever travels from this page to the API: no response contains one,
// and the value fields are emptied as soon as a form closes.
"use strict";

(() => {

  const state = { project: null, csrf: null, secrets: [], vars: [] };
  const $ = (id) => document.getElementById(id);

  // ---- API --------------------------------------------------------------------------------------

  const {
    NAME_MAX, VALUE_MAX_BYTES, ApiError, createApi, utf8Length, setTime, toast, setBusy, fieldError, nameProblem,
  } = window.BackendSecretsPage;
  const api = createApi(() => state.csrf);

  const projectPath = (store, name) => {
    const base = `/api/projects/${encodeURIComponent(state.project)}/${store}`;
    return name === undefined ? base : `${base}/${encodeURIComponent(name)}`;
  };

  // A 401 anywhere means the session ended: back to sign-in. Anything else is the caller's to show.
  function sessionEnded(error) {
    if (error instanceof ApiError && error.status === 401 && state.project) {
      showSignIn("Your session has ended. Sign in again to continue.");
      return true;
    }
    return false;
  }

  function valueProblem(value) {
    if (!value) return "Enter a value.";
    const size = utf8Length(value);
    if (size > VALUE_MAX_BYTES) return `The value is ${size} bytes; the limit is ${VALUE_MAX_BYTES} bytes.`;
    return "";
  }

  // Dialogs: close on Cancel/×/Esc; `onClose` runs however they close.
  function setUpDialog(dialog, onClose) {
    dialog.querySelectorAll("[data-close]").forEach((button) => button.addEventListener("click", () => dialog.close()));
    dialog.addEventListener("close", onClose);
  }

  // ---- Views ------------------------------------------------------------------------------------

  function showSignIn(notice) {
    state.project = null;
    state.csrf = null;
    state.secrets = [];
    state.vars = [];
    document.querySelectorAll("dialog[open]").forEach((dialog) => dialog.close());
    $("loading").hidden = true;
    $("app-view").hidden = true;
    $("account").hidden = true;
    $("signin-view").hidden = false;
    $("signin-notice").textContent = notice || "";
    $("signin-notice").hidden = !notice;
    $("signin-token").value = "";
    fieldError($("signin-token"), $("signin-error"), "");
    $("signin-token").focus();
  }

  async function showApp(session) {
    state.project = session.project;
    state.csrf = session.csrf_token;
    $("project-id").textContent = session.project;
    $("download-env").href = `${projectPath("frontend-vars")}.env`;
    $("download-env").setAttribute("download", `${session.project}.env`);
    $("loading").hidden = true;
    $("signin-view").hidden = true;
    $("account").hidden = false;
    $("app-view").hidden = false;
    selectTab(location.hash === "#frontend" ? "frontend" : "secrets", { focus: false });
    await Promise.all([loadSecrets(), loadVars()]);
  }

  // ---- Tabs -------------------------------------------------------------------------------------

  const TABS = ["secrets", "frontend"];

  function selectTab(which, { focus = true } = {}) {
    for (const name of TABS) {
      const tab = $(`tab-${name}`);
      const selected = name === which;
      tab.setAttribute("aria-selected", String(selected));
      tab.tabIndex = selected ? 0 : -1;
      $(`panel-${name}`).hidden = !selected;
      if (selected && focus) tab.focus();
    }
    const hash = which === "frontend" ? "#frontend" : "";
    if (location.hash !== hash) history.replaceState(null, "", `${location.pathname}${location.search}${hash}`);
  }

  function setUpTabs() {
    for (const name of TABS) {
      const tab = $(`tab-${name}`);
      tab.addEventListener("click", () => selectTab(name));
      tab.addEventListener("keydown", (event) => {
        const index = TABS.indexOf(name);
        let next = null;
        if (event.key === "ArrowRight") next = TABS[(index + 1) % TABS.length];
        else if (event.key === "ArrowLeft") next = TABS[(index - 1 + TABS.length) % TABS.length];
        else if (event.key === "Home") next = TABS[0];
        else if (event.key === "End") next = TABS[TABS.length - 1];
        if (next) {
          event.preventDefault();
          selectTab(next);
        }
      });
    }
  }

  // ---- Backend Secrets --------------------------------------------------------------------------

  async function loadSecrets() {
    try {
      const data = await api("GET", projectPath("secrets"));
      state.secrets = data.secrets;
      renderSecrets();
    } catch (error) {
      if (!sessionEnded(error)) toast(`Couldn't load Backend Secrets: ${error.message}`, { error: true });
    }
  }

  function renderSecrets() {
    const rows = $("secrets-rows");
    const template = $("secret-row");
    rows.replaceChildren(
      ...state.secrets.map((secret) => {
        const row = template.content.firstElementChild.cloneNode(true);
        row.dataset.name = secret.name;
        const link = row.querySelector(".name-link");
        link.textContent = secret.name;
        link.title = `Overwrite ${secret.name}`;
        link.addEventListener("click", () => openSecretDialog(secret));
        row.querySelector(".version").textContent = `v${secret.version}`;
        setTime(row.querySelector(".updated"), secret.updated_at);
        const trash = row.querySelector('[data-action="delete"]');
        trash.setAttribute("aria-label", `Delete secret ${secret.name}`);
        trash.title = `Delete ${secret.name}`;
        trash.addEventListener("click", () => confirmDelete("secret", secret));
        return row;
      }),
    );
    $("secrets-table").hidden = state.secrets.length === 0;
    $("secrets-empty").hidden = state.secrets.length !== 0;
    $("count-secrets").textContent = state.secrets.length ? String(state.secrets.length) : "";
  }

  let secretTarget = null; // the secret being overwritten; null when adding

  function openSecretDialog(secret = null, prefill = {}) {
    secretTarget = secret;
    const name = $("secret-name");
    const note = $("secret-note");
    $("secret-form").reset();
    clearSecretErrors();
    setReveal(false);
    if (secret) {
      $("secret-dialog-title").textContent = `Overwrite ${secret.name}`;
      name.value = secret.name;
      name.readOnly = true;
      $("secret-name-hint").hidden = true;
      note.textContent =
        `The current value (version ${secret.version}) can't be read back. ` +
        `Saving replaces it: every workflow node that starts after the save sees the new value.`;
      note.hidden = false;
      $("secret-value-label").textContent = "New value";
      $("secret-submit").textContent = "Overwrite secret";
    } else {
      $("secret-dialog-title").textContent = "Add secret";
      name.readOnly = false;
      $("secret-name-hint").hidden = false;
      name.value = prefill.name || "";
      note.hidden = true;
      $("secret-value-label").textContent = "Value";
      $("secret-submit").textContent = "Save secret";
    }
    $("secret-value").value = prefill.value || "";
    $("secret-dialog").showModal();
    (secret || name.value ? $("secret-value") : name).focus();
  }

  function clearSecretErrors() {
    fieldError($("secret-name"), $("secret-name-error"), "");
    fieldError($("secret-value"), $("secret-value-error"), "");
    $("secret-form-error").textContent = "";
  }

  function setReveal(shown) {
    const button = document.querySelector("#secret-dialog .reveal");
    $("secret-value").type = shown ? "text" : "password";
    button.setAttribute("aria-pressed", String(shown));
    button.textContent = shown ? "Hide" : "Show";
  }

  async function submitSecret(event) {
    event.preventDefault();
    clearSecretErrors();
    const nameInput = $("secret-name");
    const valueInput = $("secret-value");
    const name = nameInput.value.trim();
    const value = valueInput.value;
    let problem = secretTarget ? "" : nameProblem(name);
    if (!problem && !secretTarget && state.secrets.some((s) => s.name === name)) {
      problem = `A secret named ${name} already exists. Click it in the list to overwrite it.`;
    }
    const valueIssue = valueProblem(value);
    fieldError(nameInput, $("secret-name-error"), problem);
    fieldError(valueInput, $("secret-value-error"), valueIssue);
    if (problem) return nameInput.focus();
    if (valueIssue) return valueInput.focus();

    const submit = $("secret-submit");
    setBusy(submit, true);
    try {
      const options = { body: { value } };
      if (secretTarget) options.ifMatch = secretTarget.version;
      const meta = await api("PUT", projectPath("secrets", name), options);
      $("secret-dialog").close();
      toast(secretTarget ? `Overwrote ${meta.name} (now version ${meta.version}).` : `Added secret ${meta.name}.`);
      await loadSecrets();
    } catch (error) {
      if (sessionEnded(error)) return;
      showSecretError(error);
    } finally {
      setBusy(submit, false);
    }
  }

  function showSecretError(error) {
    if (error.code === "invalid_name") {
      fieldError($("secret-name"), $("secret-name-error"), error.message);
      $("secret-name").focus();
    } else if (error.code === "invalid_value" || error.code === "value_too_large") {
      fieldError($("secret-value"), $("secret-value-error"), error.message);
      $("secret-value").focus();
    } else if (error.code === "version_mismatch") {
      $("secret-form-error").textContent =
        "This secret was changed by someone else since you opened it. Close this form and try again.";
      loadSecrets();
    } else {
      $("secret-form-error").textContent = error.message;
    }
  }

  // ---- Frontend (Build) vars --------------------------------------------------------------------

  async function loadVars() {
    try {
      const data = await api("GET", projectPath("frontend-vars"));
      state.vars = data.frontend_vars;
      renderVars();
    } catch (error) {
      if (!sessionEnded(error)) toast(`Couldn't load Frontend (Build) vars: ${error.message}`, { error: true });
    }
  }

  function renderVars() {
    const rows = $("vars-rows");
    const template = $("var-row");
    rows.replaceChildren(
      ...state.vars.map((variable) => {
        const row = template.content.firstElementChild.cloneNode(true);
        row.dataset.name = variable.name;
        const link = row.querySelector(".name-link");
        link.textContent = variable.name;
        link.title = `Edit ${variable.name}`;
        row.querySelector(".value").textContent = variable.value;
        row.querySelector(".value").title = variable.value;
        setTime(row.querySelector(".updated"), variable.updated_at);
        row.querySelectorAll('[data-action="edit"]').forEach((button) => {
          button.addEventListener("click", () => openVarDialog(variable));
        });
        const edit = row.querySelector('.icon-btn[data-action="edit"]');
        edit.setAttribute("aria-label", `Edit variable ${variable.name}`);
        edit.title = `Edit ${variable.name}`;
        const trash = row.querySelector('[data-action="delete"]');
        trash.setAttribute("aria-label", `Delete variable ${variable.name}`);
        trash.title = `Delete ${variable.name}`;
        trash.addEventListener("click", () => confirmDelete("var", variable));
        return row;
      }),
    );
    $("vars-table").hidden = state.vars.length === 0;
    $("vars-empty").hidden = state.vars.length !== 0;
    $("count-frontend").textContent = state.vars.length ? String(state.vars.length) : "";
  }

  let varTarget = null;

  function openVarDialog(variable = null) {
    varTarget = variable;
    $("var-form").reset();
    clearVarErrors();
    const name = $("var-name");
    if (variable) {
      $("var-dialog-title").textContent = `Edit ${variable.name}`;
      name.value = variable.name;
      name.readOnly = true;
      $("var-value").value = variable.value;
    } else {
      $("var-dialog-title").textContent = "Add variable";
      name.readOnly = false;
    }
    $("var-dialog").showModal();
    (variable ? $("var-value") : name).focus();
  }

  function clearVarErrors() {
    fieldError($("var-name"), $("var-name-error"), "");
    fieldError($("var-value"), $("var-value-error"), "");
    $("var-guardrail").hidden = true;
    $("var-guardrail-message").textContent = "";
    $("var-form-error").textContent = "";
  }

  async function submitVar(event) {
    event.preventDefault();
    clearVarErrors();
    const nameInput = $("var-name");
    const valueInput = $("var-value");
    const name = nameInput.value.trim();
    const value = valueInput.value;
    let problem = varTarget ? "" : nameProblem(name);
    if (!problem && !varTarget && state.vars.some((v) => v.name === name)) {
      problem = `A variable named ${name} already exists. Click it in the list to edit it.`;
    }
    const valueIssue = valueProblem(value);
    fieldError(nameInput, $("var-name-error"), problem);
    fieldError(valueInput, $("var-value-error"), valueIssue);
    if (problem) return nameInput.focus();
    if (valueIssue) return valueInput.focus();

    const submit = $("var-submit");
    setBusy(submit, true);
    try {
      const options = { body: { value } };
      if (varTarget) options.ifMatch = varTarget.version;
      const saved = await api("PUT", projectPath("frontend-vars", name), options);
      $("var-dialog").close();
      toast(varTarget ? `Updated ${saved.name}.` : `Added variable ${saved.name}.`);
      await loadVars();
    } catch (error) {
      if (sessionEnded(error)) return;
      showVarError(error);
    } finally {
      setBusy(submit, false);
    }
  }

  function showVarError(error) {
    if (error.code === "looks_like_secret") {
      $("var-guardrail-message").textContent = error.message;
      $("var-guardrail").hidden = false;
      $("var-value").setAttribute("aria-invalid", "true");
      $("var-value").focus();
    } else if (error.code === "invalid_name") {
      fieldError($("var-name"), $("var-name-error"), error.message);
      $("var-name").focus();
    } else if (error.code === "invalid_value" || error.code === "value_too_large") {
      fieldError($("var-value"), $("var-value-error"), error.message);
      $("var-value").focus();
    } else if (error.code === "version_mismatch") {
      $("var-form-error").textContent =
        "This variable was changed by someone else since you opened it. Close this form and try again.";
      loadVars();
    } else {
      $("var-form-error").textContent = error.message;
    }
  }

  // The guardrail's way out: the same name and value, as a Backend Secret.
  function moveVarToSecrets() {
    const name = $("var-name").value.trim();
    const value = $("var-value").value;
    $("var-dialog").close();
    selectTab("secrets", { focus: false });
    openSecretDialog(null, { name: state.secrets.some((s) => s.name === name) ? "" : name, value });
  }

  // ---- Delete -----------------------------------------------------------------------------------

  let deleteTarget = null;

  function confirmDelete(kind, item) {
    deleteTarget = { kind, item };
    const secret = kind === "secret";
    $("confirm-title").textContent = secret ? `Delete secret ${item.name}?` : `Delete variable ${item.name}?`;
    $("confirm-text").textContent = secret
      ? "It is removed at once and stops resolving in workflows: an execution that reads it fails with secret_not_found. This can't be undone."
      : "It is removed from the .env export; your next build no longer includes it.";
    $("confirm-error").textContent = "";
    $("confirm-submit").textContent = secret ? "Delete secret" : "Delete variable";
    $("confirm-dialog").showModal();
    $("confirm-dialog").querySelector("[data-close]").focus();
  }

  async function submitDelete(event) {
    event.preventDefault();
    if (!deleteTarget) return;
    const { kind, item } = deleteTarget;
    const submit = $("confirm-submit");
    setBusy(submit, true);
    try {
      await api("DELETE", projectPath(kind === "secret" ? "secrets" : "frontend-vars", item.name));
      $("confirm-dialog").close();
      toast(`Deleted ${item.name}.`);
    } catch (error) {
      if (sessionEnded(error)) return;
      if (error.status === 404) {
        $("confirm-dialog").close();
        toast(`${item.name} was already deleted.`);
      } else {
        $("confirm-error").textContent = error.message;
        return;
      }
    } finally {
      setBusy(submit, false);
    }
    await (kind === "secret" ? loadSecrets() : loadVars());
  }

  // ---- Sign in and out --------------------------------------------------------------------------

  async function submitSignIn(event) {
    event.preventDefault();
    const input = $("signin-token");
    const token = input.value.trim();
    if (!token) {
      fieldError(input, $("signin-error"), "Paste your dashboard token.");
      return input.focus();
    }
    const submit = event.submitter || $("signin-form").querySelector("[type=submit]");
    setBusy(submit, true);
    try {
      const session = await api("POST", "/api/session", { body: { token } });
      input.value = "";
      await showApp(session);
      $("tab-secrets").focus();
    } catch (error) {
      const messages = {
        invalid_token: "That token isn't known. Check that you copied the whole dashboard token.",
        wrong_token_scope: "Sign in with the project's dashboard token (bsd_…), not the admin or engine token.",
      };
      fieldError(input, $("signin-error"), messages[error.code] || error.message);
      input.focus();
    } finally {
      setBusy(submit, false);
    }
  }

  async function signOut() {
    try {
      await api("DELETE", "/api/session");
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 401)) {
        toast(`Couldn't sign out: ${error.message}`, { error: true });
        return;
      }
    }
    showSignIn("You have signed out.");
  }

  // ---- Start ------------------------------------------------------------------------------------

  function setUp() {
    setUpTabs();
    $("signin-form").addEventListener("submit", submitSignIn);
    $("sign-out").addEventListener("click", signOut);
    $("add-secret").addEventListener("click", () => openSecretDialog());
    $("add-var").addEventListener("click", () => openVarDialog());
    $("secret-form").addEventListener("submit", submitSecret);
    $("var-form").addEventListener("submit", submitVar);
    $("confirm-form").addEventListener("submit", submitDelete);
    $("var-move").addEventListener("click", moveVarToSecrets);
    document.querySelector("#secret-dialog .reveal").addEventListener("click", (event) => {
      setReveal(event.currentTarget.getAttribute("aria-pressed") !== "true");
    });
    // A secret's value never stays in the page once its form is closed.
    setUpDialog($("secret-dialog"), () => {
      $("secret-value").value = "";
      setReveal(false);
      secretTarget = null;
    });
    setUpDialog($("var-dialog"), () => {
      varTarget = null;
    });
    setUpDialog($("confirm-dialog"), () => {
      deleteTarget = null;
    });
  }

  async function start() {
    setUp();
    try {
      await showApp(await api("GET", "/api/session"));
    } catch (error) {
      showSignIn(error instanceof ApiError && error.code === "session_expired" ? "Your session has ended. Sign in again." : "");
    }
  }

  start();
})();
