// A worker thread of gemm-parallel.ts: takes blocks of each product the calling thread publishes.
import { workerData } from "node:worker_threads";
import { serveBlocks, type TeamSetup } from "./gemm-parallel.js";

serveBlocks(workerData as TeamSetup);
