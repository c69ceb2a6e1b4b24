// docs/rules.md §7.5: AveragePool is a depthwise conv with every tap 1/(kh·kw) — when the divisor is the same
// everywhere, i.e. count_include_pad = 1 or no padding. With count_include_pad = 0 and pads the
// border windows divide by fewer taps: not a conv.
import { makeMap, refuse, type LinearMap, type Pads, type Pair, type Refusal } from "./linear-map.js";

export interface AveragePoolParams {
  kernel: Pair;
  stride: Pair;
  pads: Pads;
  countIncludePad: boolean;
  ceilMode: boolean;
  dilation: Pair;
}

export function averagePoolMap(channels: number, p: AveragePoolParams): LinearMap | Refusal {
  const padded = p.pads.some((v) => v !== 0);
  if (padded && !p.countIncludePad) return refuse("AveragePool with count_include_pad=0 and pads: border windows divide by fewer taps");
  if (p.ceilMode) return refuse("AveragePool with ceil_mode=1: partial windows at the border");
  const taps = p.kernel[0] * p.kernel[1];
  return makeMap({
    outChannels: channels, inChannels: channels, groups: channels, kh: p.kernel[0], kw: p.kernel[1],
    kernel: new Float64Array(channels * taps).fill(1 / taps),
    stride: [...p.stride], pads: [...p.pads], dilation: [...p.dilation],
  });
}
