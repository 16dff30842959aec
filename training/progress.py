"""Progress lines for long loops, written as plain lines (the output is often not a terminal: `make demo`, logs).

    progress = Progress("train", total=188, unit="steps", per_unit=32, interval=30.0)
    progress.start(done)            # the rate's origin (after the first step, which includes tracing)
    progress.update(done)           # prints when `interval` seconds have passed since the last line
    with Ticker(lambda: progress.poll(read_done), period=1.0):   # lines while one long call runs
        ...

A line: `train: 40/188 steps (21%), 12.3 examples/s, about 2m05s left`. At most one line per `interval` seconds of
wall time (`clock` is injectable, for tests).
"""
import threading
import time

DEFAULT_INTERVAL = 30.0


def format_duration(seconds):
    seconds = max(0, int(round(seconds)))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class Progress:
    """Throttled progress lines: `<what>: <done>/<total> <unit> (<pct>%), <rate> <rate_unit>/s, about <t> left`.

    total None: no percentage and no time left. per_unit: rate units per unit (examples per step). Thread-safe
    (update/poll may come from a Ticker thread)."""

    def __init__(self, what, total=None, *, unit="examples", per_unit=1, rate_unit="examples",
                 interval=DEFAULT_INTERVAL, print_fn=print, clock=time.monotonic):
        self.what, self.total, self.unit = what, total, unit
        self.per_unit, self.rate_unit = per_unit, rate_unit
        self.interval, self.print_fn, self.clock = float(interval), print_fn, clock
        self.done = 0
        self._lock = threading.Lock()
        self._last = clock()
        self._t0 = self._d0 = None

    def start(self, done):
        """Measure the rate from here (`done` units done now)."""
        with self._lock:
            self._t0, self._d0, self.done = self.clock(), done, done

    def update(self, done):
        self.done = done
        return self.poll()

    def poll(self, read_done=None):
        """Print a line if `interval` seconds have passed since the last one (`read_done()` first, when given, for
        the current count). Returns whether it printed."""
        with self._lock:
            now = self.clock()
            if now - self._last < self.interval:
                return False
            if read_done is not None:
                self.done = read_done()
            self._last = now
            line = self.line(now)
        self.print_fn(line)
        return True

    def line(self, now=None):
        now = self.clock() if now is None else now
        done, total = self.done, self.total
        if total:
            parts = [f"{done}/{total} {self.unit} ({100.0 * done / total:.0f}%)"]
        else:
            parts = [f"{done} {self.unit}"]
        if self._t0 is not None and now > self._t0 and done > self._d0:
            rate = (done - self._d0) / (now - self._t0)
            parts.append(f"{rate * self.per_unit:.1f} {self.rate_unit}/s")
            if total:
                parts.append(f"about {format_duration(max(0, total - done) / rate)} left")
        elif self._t0 is None:
            parts.append("starting")
        return f"{self.what}: " + ", ".join(parts)


class Ticker:
    """Context manager: a daemon thread calling `fn()` every `period` seconds until the block ends (progress lines
    while the main thread is inside one long call, e.g. a tf.function running many steps)."""

    def __init__(self, fn, period=1.0):
        self.fn, self.period = fn, float(period)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)

    def _run(self):
        while not self._stop.wait(self.period):
            self.fn()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        return False


__all__ = ["DEFAULT_INTERVAL", "Progress", "Ticker", "format_duration"]
