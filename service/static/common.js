// Backend Secrets: what the dashboard pages (Variables, Credentials) share. Plain JavaScript, no build
// step, loaded before each page's own script; it exposes one object, window.BackendSecretsPage.
"use strict";

window.BackendSecretsPage = (() => {
  const NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
  const NAME_MAX = 128;
  const VALUE_MAX_BYTES = 65536;
  const $ = (id) => document.getElementById(id);

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  // The API as the pages call it: JSON in and out, the session's CSRF token on every change.
  const createApi = (csrf) => async function api(method, path, { body, ifMatch } = {}) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (method !== "GET" && csrf()) headers["X-CSRF-Token"] = csrf();
    if (ifMatch !== undefined) headers["If-Match"] = `"${ifMatch}"`;
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: "same-origin",
        cache: "no-store",
      });
    } catch {
      throw new ApiError(0, "network_error", "The service can't be reached. Check your connection and try again.");
    }
    if (response.status === 204) return null;
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    if (!response.ok) {
      const error = (data && data.error) || {};
      throw new ApiError(response.status, error.code || "http_error", error.message || `HTTP ${response.status}`);
    }
    return data;
  };

  // ---- Small helpers ----------------------------------------------------------------------------

  function utf8Length(text) {
    return new TextEncoder().encode(text).length;
  }

  function relativeTime(iso) {
    const then = new Date(iso);
    const seconds = Math.round((Date.now() - then.getTime()) / 1000);
    if (Number.isNaN(seconds)) return iso;
    if (seconds < 45) return "just now";
    const minutes = Math.round(seconds / 60);
    if (minutes < 60) return `${minutes} min ago`;
    const hours = Math.round(minutes / 60);
    if (hours < 24) return `${hours} h ago`;
    const days = Math.round(hours / 24);
    if (days < 30) return `${days} d ago`;
    return then.toLocaleDateString(undefined, { year: "numeric", month: "short", day: "numeric" });
  }

  function setTime(element, iso) {
    element.dateTime = iso;
    element.textContent = relativeTime(iso);
    element.title = new Date(iso).toLocaleString();
  }

  let toastTimer = null;
  function toast(message, { error = false } = {}) {
    const element = $("toast");
    element.textContent = message;
    element.classList.toggle("toast-error", error);
    element.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => {
      element.hidden = true;
    }, 4000);
  }

  function setBusy(button, busy) {
    button.disabled = busy;
    button.setAttribute("aria-busy", busy ? "true" : "false");
  }

  function fieldError(input, errorElement, message) {
    errorElement.textContent = message || "";
    if (message) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  }

  function nameProblem(name) {
    if (!name) return "Enter a name.";
    if (name.length > NAME_MAX) return `A name has at most ${NAME_MAX} characters.`;
    if (!NAME_RE.test(name)) return "Use letters, digits and _ only, and don't start with a digit.";
    return "";
  }

  return {
    NAME_RE, NAME_MAX, VALUE_MAX_BYTES, ApiError, createApi,
    utf8Length, relativeTime, setTime, toast, setBusy, fieldError, nameProblem,
  };
})();
