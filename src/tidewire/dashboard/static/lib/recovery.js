// What the last reconnection recovered: every subscription resumed, replayed or resynced.

export class RecoveryTracker {
  /** @param {import("../tidewire-client.js").TidewireClient} client */
  constructor(client) {
    this.client = client;
    /** "idle" | "reconnecting" | "resubscribing" | "recovered" */
    this.phase = "idle";
    this.lostAt = null;
    this.recoveredAt = null;
    this.closeCode = null;
    this._pending = new Set();
    this.replayed = 0;
    this.resynced = 0;
    this.resumed = 0;
    client.on("state", (previous, current) => {
      if (current === "reconnecting") {
        if (this.phase !== "reconnecting") this.lostAt = Date.now();
        this.phase = "reconnecting";
        this.closeCode = client.closeCode;
      } else if (current === "connected" && previous === "reconnecting") {
        this.phase = "resubscribing";
        this._pending = new Set([...client.subscriptions.keys()]);
        this.replayed = this.resynced = this.resumed = 0;
        this._check();
      }
    });
    client.on("confirmed", (subscription) => {
      if (this.phase !== "resubscribing" || !this._pending.delete(subscription.subscriptionId)) return;
      this.resumed += 1;
      if (subscription.recovered === true) this.replayed += 1;
      else if (subscription.recovered === false) this.resynced += 1;
      this._check();
    });
  }

  _check() {
    // Subscriptions ended meanwhile (refused resubscriptions) are not waited for.
    for (const id of this._pending) if (!this.client.subscriptions.has(id)) this._pending.delete(id);
    if (this._pending.size === 0) {
      this.phase = "recovered";
      this.recoveredAt = Date.now();
    }
  }

  /** A one-line account for the connection panel. */
  describe() {
    switch (this.phase) {
      case "idle":
        return "no reconnection yet";
      case "reconnecting":
        return `reconnecting since ${new Date(this.lostAt).toLocaleTimeString()} (close ${this.closeCode ?? "–"})`;
      case "resubscribing":
        return `resubscribing: ${this._pending.size} waiting`;
      default:
        return `recovered ${this.resumed} subscriptions in ${((this.recoveredAt - this.lostAt) / 1000).toFixed(1)}s: ${this.replayed} replayed from history, ${this.resynced} resynced from snapshot`;
    }
  }
}
