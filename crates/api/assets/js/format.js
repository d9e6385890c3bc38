// Formatting for people: Korean won with thousands separators, times in KST.

const wonFormat = new Intl.NumberFormat("ko-KR");

/** 1234500 -> "1,234,500 원". Accepts numbers, BigInt or digit strings. */
export function won(amount) {
  if (amount === undefined || amount === null || amount === "") return "—";
  const value = typeof amount === "string" && /^-?\d+$/.test(amount) ? BigInt(amount) : amount;
  return `${wonFormat.format(value)} 원`;
}

/** A signed amount for history rows: "+50,000 원" / "−12,000 원". */
export function signedWon(amount) {
  const n = Number(amount);
  if (!Number.isFinite(n)) return won(amount);
  if (n > 0) return `+${won(n)}`;
  if (n < 0) return `−${won(-n)}`;
  return won(0);
}

/** An axis label: 12,000,000 -> "1,200만", 300,000,000 -> "3억". */
export function wonShort(amount) {
  const n = Number(amount);
  if (Math.abs(n) >= 1e8) return `${trim(n / 1e8)}억`;
  if (Math.abs(n) >= 1e4) return `${wonFormat.format(Math.round(n / 1e4))}만`;
  return wonFormat.format(n);
}

function trim(x) {
  return x.toFixed(x >= 10 ? 0 : 1).replace(/\.0$/, "");
}

const timeParts = new Intl.DateTimeFormat("en-CA", {
  timeZone: "Asia/Seoul",
  year: "numeric",
  month: "2-digit",
  day: "2-digit",
  hour: "2-digit",
  minute: "2-digit",
  second: "2-digit",
  hourCycle: "h23",
});

/** Unix ms -> "2026-11-25 09:57:01" in Korean time (KST). */
export function time(ms) {
  if (ms === undefined || ms === null) return "—";
  const part = Object.fromEntries(timeParts.formatToParts(new Date(Number(ms))).map((p) => [p.type, p.value]));
  return `${part.year}-${part.month}-${part.day} ${part.hour}:${part.minute}:${part.second}`;
}

/** "platform_fee" -> "platform fee". */
export function label(name) {
  return String(name ?? "").replaceAll("_", " ");
}

/** A long id shortened for a table cell; the full id stays in the title. */
export function shortId(id) {
  const text = String(id ?? "");
  return text.length > 14 ? `${text.slice(0, 8)}…${text.slice(-4)}` : text;
}
