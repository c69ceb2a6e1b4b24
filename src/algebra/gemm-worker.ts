// A worker thread of gemm-parallel.ts: takes blocks of each product it is sent.
import { parentPort } from "node:worker_threads";
import { runBlocks, type GemmJob } from "./gemm-parallel.js";

parentPort?.on("message", (job: GemmJob) => runBlocks(job));
