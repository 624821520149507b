// The draw loop: panels draw once per animation frame, never once per message.
//
// Messages only update plain data structures (the store, the telemetry, the capture buffer)
// and mark them changed; this loop is the only place that touches the DOM and the charts,
// and only for what is on screen. At 5,000 messages per second that is what keeps the page
// smooth: the work per message is a few object writes, the work per frame is bounded.

export class Scheduler {
  constructor() {
    /** @type {{draw: (now: number) => void, visible: () => boolean}[]} */
    this._drawables = [];
    /** Frames drawn since the page loaded (tests read it to see the page is not stuck). */
    this.frames = 0;
    /** Frames per second over the last second. */
    this.fps = 0;
    /** Longest draw of the last second, in ms. */
    this.maxDrawMs = 0;
    this._windowStart = 0;
    this._windowFrames = 0;
    this._windowMax = 0;
    this._running = false;
  }

  add(drawable) {
    this._drawables.push(drawable);
  }

  start() {
    if (this._running) return;
    this._running = true;
    const frame = (now) => {
      const started = performance.now();
      for (const drawable of this._drawables) {
        if (!drawable.visible()) continue;
        try {
          drawable.draw(now);
        } catch (error) {
          // One broken panel must not stop the others from drawing.
          console.error(error);
        }
      }
      this.frames += 1;
      this._windowFrames += 1;
      this._windowMax = Math.max(this._windowMax, performance.now() - started);
      if (now - this._windowStart >= 1000) {
        this.fps = (this._windowFrames * 1000) / (now - this._windowStart || 1);
        this.maxDrawMs = this._windowMax;
        this._windowStart = now;
        this._windowFrames = 0;
        this._windowMax = 0;
      }
      requestAnimationFrame(frame);
    };
    requestAnimationFrame(frame);
  }
}

/** Limits a panel's redraws to `hz` per second (tables and charts need no 60 Hz). */
export function throttle(hz) {
  const period = 1000 / hz;
  let last = -Infinity;
  return (now) => {
    if (now - last < period) return false;
    last = now;
    return true;
  };
}
