// A scripted stand-in for the browser's WebSocket: the test plays the gateway.
export class FakeWebSocket {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSING = 2;
  static CLOSED = 3;
  /** @type {FakeWebSocket[]} */
  static instances = [];

  constructor(url, protocol) {
    this.CONNECTING = 0;
    this.OPEN = 1;
    this.CLOSING = 2;
    this.CLOSED = 3;
    this.url = url;
    /** Every subprotocol offered (the token entry included); like the gateway, the fake
     * answers with the first, the protocol entry. */
    this.offered = protocol === undefined ? [] : Array.isArray(protocol) ? [...protocol] : [protocol];
    this.protocol = this.offered[0] ?? "";
    this.readyState = FakeWebSocket.OPEN;
    this.sent = [];
    this.closedWith = null;
    this.onmessage = null;
    this.onclose = null;
    this.onerror = null;
    FakeWebSocket.instances.push(this);
  }

  static last() {
    return FakeWebSocket.instances[FakeWebSocket.instances.length - 1];
  }

  send(text) {
    if (this.readyState !== FakeWebSocket.OPEN) throw new Error("not open");
    this.sent.push(JSON.parse(text));
  }

  close(code, reason) {
    this.readyState = FakeWebSocket.CLOSED;
    this.closedWith = { code, reason };
  }

  // ---- the gateway's side
  receive(message) {
    this.onmessage?.({ data: JSON.stringify(message) });
  }

  establish(id = "c-1", extra = {}) {
    this.receive({ type: "connection_established", connection_id: id, server_version: "t", heartbeat_interval: 15, limits: {}, ...extra });
  }

  drop(code = 1006, reason = "") {
    this.readyState = FakeWebSocket.CLOSED;
    this.onclose?.({ code, reason });
  }

  /** The token offered as a `tidewire.token.<jwt>` entry, or null. */
  get offeredToken() {
    const entry = this.offered.find((p) => p.startsWith("tidewire.token."));
    return entry === undefined ? null : entry.slice("tidewire.token.".length);
  }

  sentOfType(type) {
    return this.sent.filter((m) => m.type === type);
  }
}

export const tick = (ms = 0) => new Promise((resolve) => setTimeout(resolve, ms));
