// How the dashboard authenticates when the gateway asks for tokens (`auth_required` of
// /api/config). No DOM here: the connection panel shows `AuthSession.phase` and `.message`.
//
// The token is pasted by the operator and kept in sessionStorage (this tab only, gone with
// it; never localStorage, which every later visitor of the machine could read). It goes to
// the client, which offers it in the WebSocket handshake, and as `Authorization: Bearer` on
// the dashboard's control-plane requests.
//
// A browser is not told why a WebSocket handshake failed (a 401 looks like any lost
// connection, close 1006), so when an attempt fails the token is checked against the
// control plane (`/api/whoami` takes any valid token), whose answer names the reason.

const STORAGE_KEY = "tidewire.token";
const CHECK_PATH = "/api/whoami";
const EXPIRY_WARNING_MS = 60_000;

/** The token remembered for this tab; null when none (or storage is turned off). */
export function storedToken(storage = globalThis.sessionStorage) {
  try {
    return storage?.getItem(STORAGE_KEY) || null;
  } catch {
    return null;
  }
}

/** Remember `token` for this tab (null forgets it). */
export function storeToken(token, storage = globalThis.sessionStorage) {
  try {
    if (token) storage?.setItem(STORAGE_KEY, token);
    else storage?.removeItem(STORAGE_KEY);
  } catch {
    // Storage turned off: the token lasts as long as the page.
  }
}

/** `fetch` of a control-plane path, with the token as `Authorization: Bearer` when given. */
export function apiFetch(path, token = null, init = {}) {
  const headers = new Headers(init.headers ?? {});
  if (token) headers.set("Authorization", `Bearer ${token}`);
  return fetch(path, { ...init, headers });
}

/**
 * What the control plane says of `token`: `{ok: true}`, `{ok: false, code, message}` when it
 * refuses it (401), or `{ok: null, message}` when it cannot tell (unreachable, other answer).
 */
export async function checkToken(token) {
  let response;
  try {
    response = await apiFetch(CHECK_PATH, token);
  } catch (error) {
    return { ok: null, message: `control plane unreachable (${error.message})` };
  }
  if (response.ok) return { ok: true };
  if (response.status !== 401) return { ok: null, message: `${CHECK_PATH} answered ${response.status}` };
  const body = await response.json().catch(() => ({}));
  return { ok: false, code: body.error_code ?? "unauthorized", message: body.error_message ?? "token refused" };
}

/**
 * The dashboard's side of authentication: the token in use, and a verdict on it.
 *
 * phase: "off" (the gateway needs no token), "missing", "checking", "ok", "expiring" (less
 * than a minute left), "expired", "refused"; `message` says it in words.
 */
export class AuthSession {
  /**
   * @param {import("../tidewire-client.js").TidewireClient} client
   * @param {{required: boolean, start: () => void, note?: (kind: string, text: string) => void}} options
   *   `start()` connects and (re)creates the dashboard's subscriptions
   */
  constructor(client, { required, start, note = () => {} }) {
    this.client = client;
    this.required = required;
    this._start = start;
    this._note = note;
    this.token = required ? storedToken() : null;
    this.phase = required ? (this.token ? "checking" : "missing") : "off";
    this.message = this.phase === "missing" ? "This gateway needs a token: paste one to connect." : "";
    this._attemptsChecked = -1;
    client.on("state", (previous, current) => this._onState(previous, current));
  }

  /** The token for control-plane requests (null with authentication off). */
  get bearer() {
    return this.required ? this.token : null;
  }

  /** Boot: connect with the remembered token, after the control plane accepted it. */
  async begin() {
    if (!this.required) {
      this._start();
      return;
    }
    if (this.token) await this.use(this.token);
  }

  /**
   * The operator pasted a token: check it, remember it, and connect with it (or, while
   * connected, hand it over as a refresh; a token of another user needs a new connection).
   */
  async use(token) {
    token = token.trim();
    if (!token) return;
    this._set("checking", "Checking the token…");
    const verdict = await checkToken(token);
    if (verdict.ok === false) {
      this._refused(verdict.code, verdict.message);
      return;
    }
    this.token = token;
    storeToken(token);
    if (this.client.connected) {
      try {
        await this.client.setToken(token);
        this._connected("Token renewed");
      } catch (error) {
        this._note("auth", `refresh refused (${error.message}): reconnecting with the new token`);
        this.client.reconnect();
      }
      return;
    }
    try {
      await this.client.setToken(token);
    } catch (error) {
      this._refused("unauthorized", error.message); // not a JWT: cannot even be offered
      return;
    }
    this._set("checking", "Connecting…");
    this._start();
  }

  /** The Connect button: without a token there is nothing to connect with yet. */
  connect() {
    if (this.required && !this.token) this._set("missing", "This gateway needs a token: paste one to connect.");
    else this._start();
  }

  /** Forget the token (this tab's storage too) and disconnect. */
  forget() {
    this.token = null;
    storeToken(null);
    this.client.close();
    this._set("missing", "Token forgotten: paste one to connect.");
  }

  /** Called every drawn frame: the warning before expiry, checks while reconnecting. */
  tick(now = Date.now()) {
    if (!this.required) return;
    const c = this.client;
    if (c.connected && (this.phase === "ok" || this.phase === "expiring")) {
      const left = c.tokenExpiresAt === null ? Infinity : c.tokenExpiresAt - now;
      if (left < EXPIRY_WARNING_MS) {
        this._set("expiring", `Token expires in ${Math.max(0, Math.ceil(left / 1000))} s: paste a new one to stay connected.`);
      }
    }
    // Each failed attempt while reconnecting may be a refused handshake: ask why.
    if (c.state === "reconnecting" && this.token && c.reconnectAttempts !== this._attemptsChecked) {
      this._attemptsChecked = c.reconnectAttempts;
      void this._checkAfterFailure();
    }
  }

  _onState(previous, current) {
    if (!this.required) return;
    if (current === "connected") this._connected("Signed in");
    else if (current === "closed") {
      const error = this.client.lastError;
      if (error?.name !== "AuthenticationError") return;
      if (/expired/i.test(error.reason)) this._set("expired", `Token expired (close ${error.code}): paste a new token to reconnect.`);
      else this._set("refused", `Token refused (close ${error.code}${error.reason ? `: ${error.reason}` : ""}): paste a valid token.`);
    } else if (current === "reconnecting" && previous === "connecting") {
      this._attemptsChecked = -1; // the first attempt failed: check now
    }
  }

  async _checkAfterFailure() {
    const token = this.token;
    const verdict = await checkToken(token);
    // Only a refusal of the token still in use stops the client; an unreachable control
    // plane means the gateway is away, and the client keeps trying.
    if (verdict.ok !== false || token !== this.token || this.client.state === "connected") return;
    this.client.close();
    this._refused(verdict.code, verdict.message);
  }

  _connected(what) {
    const c = this.client;
    const until = c.tokenExpiresAt === null ? "" : ` · token expires at ${new Date(c.tokenExpiresAt).toLocaleTimeString()}`;
    this._set("ok", `${what} as ${c.userId ?? "?"}${until}`);
  }

  _refused(code, message) {
    if (code === "token_expired") this._set("expired", `Token expired: paste a new token (${message}).`);
    else this._set("refused", `Token refused: ${message}. Paste a valid token.`);
  }

  _set(phase, message) {
    const changed = phase !== this.phase;
    this.phase = phase;
    this.message = message;
    if (changed) this._note("auth", message); // a countdown is not news every second
  }
}
