// Peak resident memory of this process. getrusage's maxRSS is not enough in a child: Linux keeps
// the parent's high-water mark across fork + exec, so a child of a large benchmark process reports
// the parent's size. /proc/self/status's VmHWM belongs to this process's own memory map.
import * as fs from "node:fs";

export function peakRssBytes(): number {
  try {
    const m = /^VmHWM:\s+(\d+) kB/m.exec(fs.readFileSync("/proc/self/status", "utf8"));
    if (m) return Number(m[1]) * 1024;
  } catch {
    // not Linux: fall back to getrusage
  }
  return process.resourceUsage().maxRSS * 1024;
}
