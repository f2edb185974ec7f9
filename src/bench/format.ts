// Number formatting shared by the benchmark scripts' tables and JSON.
export function round(x: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export function pct(x: number): string {
  return `${(x * 100).toFixed(1).padStart(5)}%`;
}
