// Durations in the units a person reads: 850 ms, 32.9 s, 2 min 5 s, 1 h 4 min.
// The twin of core/durations.py (the pages' `duration` filter): keep the two in step.
export function formatDuration(ms) {
  if (ms == null) return "–";
  ms = Math.max(0, Math.round(ms));
  if (ms < 1000) return `${ms} ms`;
  const tenths = Math.round(ms / 100);
  if (tenths < 600) return `${(tenths / 10).toFixed(1)} s`;
  let seconds = Math.round(ms / 1000);
  if (seconds < 3600) {
    const minutes = Math.floor(seconds / 60);
    seconds %= 60;
    return seconds ? `${minutes} min ${seconds} s` : `${minutes} min`;
  }
  const total = Math.round(seconds / 60);
  const hours = Math.floor(total / 60);
  const minutes = total % 60;
  return minutes ? `${hours} h ${minutes} min` : `${hours} h`;
}
