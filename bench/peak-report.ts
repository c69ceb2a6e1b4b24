// Preloaded into a CLI run (node --import): at exit, writes the process's peak memory (VmHWM) to
// the file named by REPARAM_PEAK_FILE, so the benchmark can time the real command line.
import * as fs from "node:fs";
import { peakRssBytes } from "./peak-memory.js";

const file = process.env.REPARAM_PEAK_FILE;
if (file) process.on("exit", () => fs.writeFileSync(file, String(peakRssBytes())));
