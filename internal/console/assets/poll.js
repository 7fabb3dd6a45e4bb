// poller runs fn now and then every ms after it finished, until stopped;
// it waits while the tab is hidden, so that a background tab costs nothing.
export function poller(fn, ms) {
  let stopped = false;
  let timer = 0;
  const tick = async () => {
    if (stopped) return;
    if (!document.hidden) {
      try {
        await fn();
      } catch {
        // fn shows its own errors; polling goes on.
      }
    }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  tick();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
    // now polls at once (after a write), then keeps the rhythm.
    now() {
      clearTimeout(timer);
      tick();
    },
  };
}

export const POLL_MS = 2000;
