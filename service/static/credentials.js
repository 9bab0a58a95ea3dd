// Backend Secrets: the Credentials page (Build → Credentials). Plain JavaScript, no build step, no inline script (CSP).
//
// Same session as the Variables page: signs in through /api/session (the dashboard token becomes an HttpOnly
// cookie), then calls the API with that cookie; every change carries the session's CSRF token in X-CSRF-Token.
// The form is built from GET /api/credential-types. A credential's field values only ever travel from this page
// to the API: no response contains one, and the inputs are emptied as soon as the form closes.
"use strict";

(() => {

  const state = { project: null, csrf: null, credentials: [], types: [] };
  const $ = (id) => document.getElementById(id);

  // ---- API --------------------------------------------------------------------------------------

  const {
    NAME_MAX, VALUE_MAX_BYTES, ApiError, createApi, utf8Length, setTime, toast, setBusy, fieldError, nameProblem,
  } = window.BackendSecretsPage;
  const api = createApi(() => state.csrf);

  const credentialPath = (name) => {
    const base = `/api/projects/${encodeURIComponent(state.project)}/credentials`;
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

  // What is wrong with a field's value, by the type table's own rule; never repeats the value.
  function fieldProblem(spec, value) {
    if (!value) return `Enter the ${spec.label.toLowerCase()}.`;
    const size = utf8Length(value);
    if (size > VALUE_MAX_BYTES) return `This is ${size} bytes; the limit is ${VALUE_MAX_BYTES} bytes.`;
    if (!new RegExp(spec.pattern, "u").test(value)) {
      const spaces = /\s/u.test(value) ? " It contains a space or line break: check what you copied." : "";
      return `This doesn't match the expected format: ${spec.hint}.${spaces}`;
    }
    return "";
  }

  const typeOf = (name) => state.types.find((t) => t.type === name);
  const typeLabel = (name) => (typeOf(name) ? typeOf(name).label : name);

  // Dialogs: close on Cancel/×/Esc; `onClose` runs however they close.
  function setUpDialog(dialog, onClose) {
    dialog.querySelectorAll("[data-close]").forEach((button) => button.addEventListener("click", () => dialog.close()));
    dialog.addEventListener("close", onClose);
  }

  // ---- Views ------------------------------------------------------------------------------------

  function showSignIn(notice) {
    state.project = null;
    state.csrf = null;
    state.credentials = [];
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
    $("loading").hidden = true;
    $("signin-view").hidden = true;
    $("account").hidden = false;
    $("app-view").hidden = false;
    await Promise.all([loadTypes(), loadCredentials()]);
  }

  // ---- Credential types -------------------------------------------------------------------------

  async function loadTypes() {
    if (state.types.length) return;
    try {
      state.types = (await api("GET", "/api/credential-types")).credential_types;
    } catch (error) {
      toast(`Couldn't load the credential types: ${error.message}`, { error: true });
      return;
    }
    const select = $("credential-type");
    select.replaceChildren(
      ...state.types.map((kind) => {
        const option = document.createElement("option");
        option.value = kind.type;
        option.textContent = kind.label;
        return option;
      }),
    );
  }

  // The inputs of one type's fields, rebuilt when the type changes. Always empty: nothing is read back.
  function renderFields(typeName) {
    const kind = typeOf(typeName);
    const container = $("credential-fields");
    const template = $("credential-field");
    $("credential-type-hint").textContent = kind ? kind.description : "";
    if (!kind) {
      container.replaceChildren();
      return;
    }
    container.replaceChildren(
      ...kind.fields.map((spec) => {
        const field = template.content.firstElementChild.cloneNode(true);
        const id = `credential-field-${spec.name}`;
        const label = field.querySelector("label");
        const input = field.querySelector("input");
        const reveal = field.querySelector(".reveal");
        const hint = field.querySelector(".hint");
        const error = field.querySelector(".field-error");
        field.dataset.field = spec.name;
        label.htmlFor = id;
        label.textContent = spec.label;
        input.id = id;
        input.name = spec.name;
        input.type = spec.secret ? "password" : "text";
        input.autocomplete = spec.secret ? "new-password" : "off";
        hint.id = `${id}-hint`;
        hint.textContent = spec.secret
          ? `${capitalise(spec.hint)}. Encrypted as soon as it's saved; it can't be read back.`
          : `${capitalise(spec.hint)}.`;
        error.id = `${id}-error`;
        input.setAttribute("aria-describedby", `${hint.id} ${error.id}`);
        if (spec.secret) {
          reveal.setAttribute("aria-controls", id);
          reveal.dataset.what = spec.label.toLowerCase();
          setReveal(field, false);
          reveal.addEventListener("click", () => setReveal(field, reveal.getAttribute("aria-pressed") !== "true"));
        } else {
          reveal.remove();
        }
        return field;
      }),
    );
  }

  function capitalise(text) {
    return text.charAt(0).toUpperCase() + text.slice(1);
  }

  function setReveal(field, shown) {
    const input = field.querySelector("input");
    const button = field.querySelector(".reveal");
    if (!button) return;
    input.type = shown ? "text" : "password";
    button.setAttribute("aria-pressed", String(shown));
    button.textContent = shown ? "Hide" : "Show";
    button.setAttribute("aria-label", `${shown ? "Hide" : "Show"} ${button.dataset.what}`);
  }

  function fieldElements() {
    return [...$("credential-fields").querySelectorAll("[data-field]")].map((field) => ({
      name: field.dataset.field,
      input: field.querySelector("input"),
      error: field.querySelector(".field-error"),
    }));
  }

  // ---- Credentials ------------------------------------------------------------------------------

  async function loadCredentials() {
    try {
      const data = await api("GET", credentialPath());
      state.credentials = data.credentials;
      renderCredentials();
    } catch (error) {
      if (!sessionEnded(error)) toast(`Couldn't load Credentials: ${error.message}`, { error: true });
    }
  }

  function renderCredentials() {
    const rows = $("credentials-rows");
    const template = $("credential-row");
    rows.replaceChildren(
      ...state.credentials.map((credential) => {
        const row = template.content.firstElementChild.cloneNode(true);
        row.dataset.name = credential.name;
        const link = row.querySelector(".name-link");
        link.textContent = credential.name;
        link.title = `Overwrite ${credential.name}`;
        link.addEventListener("click", () => openCredentialDialog(credential));
        const chip = row.querySelector(".type-chip");
        chip.textContent = typeLabel(credential.type);
        chip.dataset.type = credential.type;
        row.querySelector(".version").textContent = `v${credential.version}`;
        setTime(row.querySelector(".updated"), credential.updated_at);
        const trash = row.querySelector('[data-action="delete"]');
        trash.setAttribute("aria-label", `Delete credential ${credential.name}`);
        trash.title = `Delete ${credential.name}`;
        trash.addEventListener("click", () => confirmDelete(credential));
        return row;
      }),
    );
    $("credentials-table").hidden = state.credentials.length === 0;
    $("credentials-empty").hidden = state.credentials.length !== 0;
    $("count-credentials").textContent = state.credentials.length ? String(state.credentials.length) : "";
  }

  let target = null; // the credential being overwritten; null when adding

  function openCredentialDialog(credential = null) {
    target = credential;
    const name = $("credential-name");
    const note = $("credential-note");
    const select = $("credential-type");
    $("credential-form").reset();
    clearErrors();
    if (credential) {
      $("credential-dialog-title").textContent = `Overwrite ${credential.name}`;
      name.value = credential.name;
      name.readOnly = true;
      $("credential-name-hint").hidden = true;
      note.textContent =
        `The current ${typeLabel(credential.type)} credential (version ${credential.version}) can't be read back. ` +
        "Enter every field again: saving replaces it for every node that starts after the save.";
      note.hidden = false;
      select.value = credential.type;
      $("credential-submit").textContent = "Overwrite credential";
    } else {
      $("credential-dialog-title").textContent = "Add credential";
      name.readOnly = false;
      $("credential-name-hint").hidden = false;
      note.hidden = true;
      $("credential-submit").textContent = "Save credential";
    }
    renderFields(select.value);
    $("credential-dialog").showModal();
    const first = fieldElements()[0];
    (credential ? (first ? first.input : select) : name).focus();
  }

  function clearErrors() {
    fieldError($("credential-name"), $("credential-name-error"), "");
    fieldError($("credential-type"), $("credential-type-error"), "");
    for (const { input, error } of fieldElements()) fieldError(input, error, "");
    $("credential-form-error").textContent = "";
  }

  async function submitCredential(event) {
    event.preventDefault();
    clearErrors();
    const nameInput = $("credential-name");
    const select = $("credential-type");
    const name = nameInput.value.trim();
    const kind = typeOf(select.value);
    let problem = target ? "" : nameProblem(name);
    if (!problem && !target && state.credentials.some((c) => c.name === name)) {
      problem = `A credential named ${name} already exists. Click it in the list to overwrite it.`;
    }
    fieldError(nameInput, $("credential-name-error"), problem);
    if (!kind) fieldError(select, $("credential-type-error"), "Choose a type.");
    const fields = {};
    let firstInvalid = problem ? nameInput : kind ? null : select;
    for (const { name: fieldName, input, error } of fieldElements()) {
      const spec = kind && kind.fields.find((f) => f.name === fieldName);
      const issue = spec ? fieldProblem(spec, input.value) : "";
      fieldError(input, error, issue);
      if (issue && !firstInvalid) firstInvalid = input;
      fields[fieldName] = input.value;
    }
    if (firstInvalid) return firstInvalid.focus();

    const submit = $("credential-submit");
    setBusy(submit, true);
    try {
      const options = { body: { type: kind.type, fields } };
      if (target) options.ifMatch = target.version;
      const meta = await api("PUT", credentialPath(name), options);
      $("credential-dialog").close();
      toast(
        target
          ? `Overwrote ${meta.name} (now version ${meta.version}).`
          : `Added ${typeLabel(meta.type)} credential ${meta.name}.`,
      );
      await loadCredentials();
    } catch (error) {
      if (sessionEnded(error)) return;
      showServerError(error);
    } finally {
      setBusy(submit, false);
    }
  }

  // The API names the field a 422 is about as "fields.<name>: ..."; put the message beside it.
  function showServerError(error) {
    const match = /^fields\.([A-Za-z0-9_]+): (.*)$/su.exec(error.message);
    const field = match && fieldElements().find((f) => f.name === match[1]);
    if (field) {
      fieldError(field.input, field.error, capitalise(match[2]));
      field.input.focus();
    } else if (error.code === "invalid_name") {
      fieldError($("credential-name"), $("credential-name-error"), error.message);
      $("credential-name").focus();
    } else if (error.code === "unknown_credential_type") {
      fieldError($("credential-type"), $("credential-type-error"), error.message);
      $("credential-type").focus();
    } else if (error.code === "version_mismatch") {
      $("credential-form-error").textContent =
        "This credential was changed by someone else since you opened it. Close this form and try again.";
      loadCredentials();
    } else {
      $("credential-form-error").textContent = error.message;
    }
  }

  // ---- Delete -----------------------------------------------------------------------------------

  let deleteTarget = null;

  function confirmDelete(credential) {
    deleteTarget = credential;
    $("confirm-title").textContent = `Delete credential ${credential.name}?`;
    $("confirm-text").textContent =
      "It is removed at once: a node that uses it fails with credential_not_found. This can't be undone.";
    $("confirm-error").textContent = "";
    $("confirm-dialog").showModal();
    $("confirm-dialog").querySelector("[data-close]").focus();
  }

  async function submitDelete(event) {
    event.preventDefault();
    if (!deleteTarget) return;
    const credential = deleteTarget;
    const submit = $("confirm-submit");
    setBusy(submit, true);
    try {
      await api("DELETE", credentialPath(credential.name));
      $("confirm-dialog").close();
      toast(`Deleted ${credential.name}.`);
    } catch (error) {
      if (sessionEnded(error)) return;
      if (error.status === 404) {
        $("confirm-dialog").close();
        toast(`${credential.name} was already deleted.`);
      } else {
        $("confirm-error").textContent = error.message;
        return;
      }
    } finally {
      setBusy(submit, false);
    }
    await loadCredentials();
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
      $("add-credential").focus();
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
    $("signin-form").addEventListener("submit", submitSignIn);
    $("sign-out").addEventListener("click", signOut);
    $("add-credential").addEventListener("click", () => openCredentialDialog());
    $("credential-form").addEventListener("submit", submitCredential);
    $("credential-type").addEventListener("change", (event) => {
      renderFields(event.currentTarget.value);
      fieldError(event.currentTarget, $("credential-type-error"), "");
    });
    $("confirm-form").addEventListener("submit", submitDelete);
    // A credential's field values never stay in the page once its form is closed.
    setUpDialog($("credential-dialog"), () => {
      $("credential-fields").replaceChildren();
      target = null;
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
