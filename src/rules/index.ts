// The built-in rules, in the order of their benefits (the driver sorts by benefit anyway).
import type { Rule } from "../pipeline/rule.js";
import { affineBeforeTranspose } from "./affine-before-transpose.js";
import { affineIntoReaders } from "./affine-into-readers.js";
import { collapseLinearRegions } from "./collapse-linear-regions.js";
import { dedupeInitializers } from "./dedupe-initializers.js";
import { dropInitializerIdentity } from "./drop-initializer-identity.js";
import { foldConstants } from "./fold-constants.js";
import { foldIntoFc } from "./fold-into-fc.js";
import { globalPooling } from "./global-pooling.js";
import { pruneZeroChannels } from "./prune-zero-channels.js";

export { affineBeforeTranspose, affineIntoReaders, collapseLinearRegions, dedupeInitializers, dropInitializerIdentity, foldConstants, foldIntoFc, globalPooling, pruneZeroChannels };

export function defaultRules(): Rule[] {
  return [dropInitializerIdentity, foldConstants, dedupeInitializers, globalPooling, affineBeforeTranspose, affineIntoReaders, collapseLinearRegions, foldIntoFc, pruneZeroChannels] as Rule[];
}
