// A pass: a named rewrite applied through the PassContext's rewriter. `run` returns whether it
// changed the graph; the driver repeats passes until none does (a fixpoint).
import type { PassContext } from "./context.js";

export interface Pass {
  name: string;
  description: string;
  run(ctx: PassContext): boolean;
}
