// An AveragePool whose window covers the whole (static) input is a GlobalAveragePool (docs/rules.md
// §13). SE blocks pool with avg_pool2d(x, kernel_size=x.size(3)), which PyTorch exports as a Pad of
// zero amounts then AveragePool(H×W): both become one GlobalAveragePool. It stays a reduction: a
// dense H×W depthwise kernel (what the linear algebra would make of it) is slower and larger.
import { Node } from "../ir/graph.js";
import { notCandidate, refuse, type Match, type Rule } from "../pipeline/rule.js";
import type { RuleContext } from "../pipeline/context.js";

interface GlobalPoolMatch extends Match {
  input: string;
}

/** A constant-mode Pad whose amounts are all zero (an identity), or undefined. */
function zeroPad(ctx: RuleContext, node: Node | undefined): Node | undefined {
  if (!node || node.opType !== "Pad" || !node.isDefaultDomain || node.string("mode", "constant") !== "constant") return undefined;
  const amounts = node.inputs[1] ? ctx.constant(node.inputs[1])?.toFloat64() : node.ints("pads");
  if (!amounts || (node.inputs[3] ?? "") !== "") return undefined;
  return Array.from(amounts).every((v) => v === 0) ? node : undefined;
}

export const globalPooling: Rule<GlobalPoolMatch> = {
  name: "global-pooling",
  description: "an AveragePool covering its whole static input (after a zero Pad) → GlobalAveragePool",
  rootOps: ["AveragePool"],
  benefit: 45,
  match(pool, ctx) {
    const k = pool.ints("kernel_shape", []);
    if (k.length !== 2) return notCandidate("AveragePool is not 2-D");
    if (pool.string("auto_pad", "NOTSET") !== "NOTSET" || pool.ints("pads", [0, 0, 0, 0]).some((v) => v !== 0)) return notCandidate("AveragePool with padding");
    if (pool.ints("dilations", [1, 1]).some((v) => v !== 1)) return notCandidate("dilated AveragePool");
    const pad = zeroPad(ctx, ctx.producers().get(pool.inputs[0]!));
    const usePad = pad && ctx.consumers(pad.outputs[0]!).length === 1 && !ctx.isGraphOutput(pad.outputs[0]!);
    const input = usePad ? pad.inputs[0]! : pool.inputs[0]!;
    const info = ctx.shapes().get(input);
    const dims = info?.dims;
    if (!dims || dims.length !== 4) return notCandidate("input rank unknown or not 4-D");
    if (dims[2] !== k[0] || dims[3] !== k[1]) return notCandidate("the window does not cover the whole input");
    // A window equal to the input only at the traced size is not a global pooling for other sizes.
    if (info.symbols?.[2] !== undefined || info.symbols?.[3] !== undefined) return refuse("the input's H, W are not static: the window covers it only at one size");
    return { anchor: pool, remove: usePad ? [pad, pool] : [pool], input };
  },
  rewrite({ anchor, remove, input }, ctx) {
    const node = new Node(ctx.uniqueName(`${anchor.name || anchor.outputs[0]}_global`), "GlobalAveragePool", [input], [anchor.outputs[0]!]);
    return {
      add: [node],
      summary: `${remove.map((n) => n.opType).join(" + ")} over the whole ${ctx.shapes().get(input)?.dims?.slice(2).join("x")} map → GlobalAveragePool`,
    };
  },
};
