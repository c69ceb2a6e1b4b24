// Activation and normalization idioms that onnxruntime fuses into one kernel (docs/rules.md §4, "Fused units"):
// GELU exported as x·0.5·(1 + erf(x/√2)) (→ Gelu), its tanh approximation (→ FastGelu) and a
// LayerNorm written out (ReduceMean, Sub, Pow, ReduceMean, Add ε, Sqrt, Div, Mul γ, Add β →
// LayerNormalization). Their constant Mul/Div/Add nodes look like affine maps, and folding one of
// them into the next layer (GELU's ×0.5, LayerNorm's γ and β) breaks the fusion: the model gets
// slower although it has fewer nodes. The readers treat every node of such a unit as not linear.
import type { Node } from "../../ir/graph.js";
import type { RuleContext } from "../../pipeline/context.js";

/** One scalar value of a constant operand of a binary node, with the other operand, or undefined. */
function scalarOperand(ctx: RuleContext, n: Node | undefined, op: string): { value: number; other: string } | undefined {
  if (!n || n.opType !== op || !n.isDefaultDomain || n.inputs.length !== 2) return undefined;
  for (const i of [0, 1] as const) {
    const c = ctx.constant(n.inputs[i]!);
    if (c && c.size === 1 && !ctx.constant(n.inputs[1 - i]!)) {
      if (op === "Div" && i === 0) return undefined; // c / x is not a scaling
      return { value: c.toFloat64()[0]!, other: n.inputs[1 - i]! };
    }
  }
  return undefined;
}

const near = (a: number, b: number) => Math.abs(a - b) <= 1e-3 * Math.abs(b);

function soleConsumer(ctx: RuleContext, tensor: string): Node | undefined {
  const c = ctx.consumers(tensor);
  return c.length === 1 && !ctx.isGraphOutput(tensor) ? c[0] : undefined;
}

/** Mul of two activations with `x` as one of them. */
function mulWith(n: Node | undefined, x: string): string | undefined {
  if (!n || n.opType !== "Mul" || n.inputs.length !== 2) return undefined;
  return n.inputs[0] === x ? n.inputs[1] : n.inputs[1] === x ? n.inputs[0] : undefined;
}

/**
 * The nodes after `core` (Erf or Tanh) of x·0.5·(1 + core(...)) in any of the orders exporters
 * write it, or undefined: Add 1, then Mul by x and Mul by 0.5 (either first), or Mul by (0.5·x).
 */
function geluTail(ctx: RuleContext, core: Node, x: string): Node[] | undefined {
  const add = soleConsumer(ctx, core.outputs[0]!);
  const one = scalarOperand(ctx, add, "Add");
  if (!add || !one || !near(one.value, 1)) return undefined;
  const m1 = soleConsumer(ctx, add.outputs[0]!);
  if (!m1 || m1.opType !== "Mul") return undefined;
  const half = scalarOperand(ctx, m1, "Mul");
  if (half && near(half.value, 0.5)) {
    const m2 = soleConsumer(ctx, m1.outputs[0]!);
    return mulWith(m2, x) !== undefined ? [add, m1, m2!] : undefined;
  }
  const other = m1.inputs[0] === add.outputs[0] ? m1.inputs[1]! : m1.inputs[0]!;
  if (other === x) {
    const m2 = soleConsumer(ctx, m1.outputs[0]!);
    const h = scalarOperand(ctx, m2, "Mul");
    return h && near(h.value, 0.5) ? [add, m1, m2!] : undefined;
  }
  // (0.5·x)·(1 + core): the 0.5 is applied to x first.
  const producer = ctx.producers().get(other);
  const hx = scalarOperand(ctx, producer, "Mul");
  return hx && hx.other === x && near(hx.value, 0.5) ? [add, m1, producer!] : undefined;
}

function findUnits(ctx: RuleContext): Map<Node, string> {
  const units = new Map<Node, string>();
  const mark = (nodes: Node[], name: string) => { for (const n of nodes) units.set(n, name); };
  const producers = ctx.producers();
  for (const n of ctx.graph.nodes) {
    if (!n.isDefaultDomain) continue;
    if (n.opType === "Erf") {
      // x/√2 (Div by √2 or Mul by 1/√2) → Erf
      const pre = producers.get(n.inputs[0]!);
      const div = scalarOperand(ctx, pre, "Div"), mul = scalarOperand(ctx, pre, "Mul");
      const x = div && near(div.value, Math.SQRT2) ? div.other : mul && near(mul.value, Math.SQRT1_2) ? mul.other : undefined;
      const tail = x === undefined ? undefined : geluTail(ctx, n, x);
      if (tail) mark([pre!, n, ...tail], "GELU");
    } else if (n.opType === "Tanh") {
      // √(2/π)·(x + 0.044715·x³) → Tanh: find x as the input of the cube (Pow 3 or Mul x·x·x).
      const scaled = producers.get(n.inputs[0]!);
      const s = scalarOperand(ctx, scaled, "Mul");
      if (!s || !near(s.value, Math.sqrt(2 / Math.PI))) continue;
      const inner = producers.get(s.other);
      if (!inner || inner.opType !== "Add") continue;
      for (const x of inner.inputs) {
        const tail = geluTail(ctx, n, x);
        const cube = inner.inputs.find((t) => t !== x);
        const c = cube ? scalarOperand(ctx, producers.get(cube), "Mul") : undefined;
        if (tail && c && near(c.value, 0.044715)) {
          mark([scaled!, inner, producers.get(cube!)!, n, ...tail], "GELU (tanh)");
          break;
        }
      }
    } else if (n.opType === "Sqrt") {
      // LayerNorm: var = ReduceMean((x − mean)²) → Add ε → Sqrt → Div (x − mean) / σ → Mul γ → Add β
      const eps = producers.get(n.inputs[0]!);
      const e = scalarOperand(ctx, eps, "Add");
      if (!e || producers.get(e.other)?.opType !== "ReduceMean") continue;
      const div = soleConsumer(ctx, n.outputs[0]!);
      if (!div || div.opType !== "Div" || div.inputs[1] !== n.outputs[0]) continue;
      const centred = producers.get(div.inputs[0]!);
      if (!centred || centred.opType !== "Sub" || producers.get(centred.inputs[1]!)?.opType !== "ReduceMean") continue;
      const members = [eps!, div];
      const gamma = soleConsumer(ctx, div.outputs[0]!);
      if (gamma && gamma.opType === "Mul" && gamma.inputs.some((t) => ctx.constant(t))) {
        members.push(gamma);
        const beta = soleConsumer(ctx, gamma.outputs[0]!);
        if (beta && beta.opType === "Add" && beta.inputs.some((t) => ctx.constant(t))) members.push(beta);
      }
      mark(members, "LayerNorm");
    }
  }
  return units;
}

/** The fused unit `node` belongs to ("GELU", "LayerNorm", …), or undefined. */
export function fusedUnitOf(ctx: RuleContext, node: Node): string | undefined {
  return ctx.memo("linear/units", () => findUnits(ctx)).get(node);
}
