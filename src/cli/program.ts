// The command line's grammar: every command, its arguments and its flags with their meaning and
// default, on commander (so each command has its own --help, and unknown flags are refused with a
// suggestion). What the commands do lives in main.ts and train.ts; this file only describes them.
import { Command, CommanderError, Option } from "commander";
import { onnxruntimeVersion, toolVersion } from "./version.js";

/** The flags of every command, keyed by their long name (`--no-verify` is `"no-verify": true`). Values stay strings: each command checks its own. */
export interface Flags {
  shape?: string[];
  input?: string[];
  "out-dir"?: string;
  "no-verify"?: boolean;
  tolerance?: string;
  atol?: string;
  rtol?: string;
  "save-outputs"?: string;
  "load-outputs"?: string;
  runs?: string;
  seed?: string;
  provider?: string;
  "external-data"?: boolean;
  "no-costlier"?: boolean;
  "duplicate-shared"?: boolean;
  "skip-failing"?: boolean;
  "max-mac-growth"?: string;
  "fix-shapes"?: boolean;
  "approx-attention"?: string;
  "approx-threshold"?: string;
  "attention-stats"?: boolean;
  calib?: string;
  labels?: string;
  "unsafe-ignore-border-rule"?: boolean;
  explain?: boolean;
  json?: boolean;
  // train / eval (src/cli/train.ts)
  arch?: string;
  "block-spec"?: string;
  data?: string;
  epochs?: string;
  batch?: string;
  lr?: string;
  optimizer?: string;
  "weight-decay"?: string;
  out?: string;
  checkpoint?: string;
  "checkpoint-every"?: string;
  resume?: boolean;
  online?: boolean;
  dynamic?: boolean;
  "dynamic-every"?: string;
  asr?: boolean;
  backend?: string;
  workers?: string;
  limit?: string;
  split?: string;
  "no-progress"?: boolean;
}

export type CommandName = "optimize" | "verify" | "inspect" | "train" | "eval";
export type Handler = (args: string[], flags: Flags) => Promise<number>;

const EXIT_CODES = "exit codes: 0 ok, 1 verification failed (nothing written), 2 bad input or usage, 3 internal error";

/** `--shape` may be given several times; every value is kept. */
const collect = (value: string, previous: string[] | undefined): string[] => [...(previous ?? []), value];

const shapeOption = () =>
  new Option("--shape <NAME=DIMS>", "fix a dynamic input's shape: NAME=1x3x224x224, onnxsim's NAME:1,3,224,224 or trtexec's NAME:1x3x224x224; repeat it or join with commas (default: batch 1, other dynamic dims 8 or the first of 16, 32, 64, 224, 1 the model accepts; the proof also runs a second size: odd batch > 1, other dynamic dims at the other parity)").argParser(collect);
const providerOption = () => new Option("--provider <cpu|cuda>", "onnxruntime execution provider for the proof (default: cpu)");
const runsOption = () => new Option("--runs <N>", "input patterns per shape set run through both models (default: 3: normal, large borders + channel offsets, large channel constants)");
const toleranceOption = () =>
  new Option("--tolerance <T>", "tolerance relative to each output's largest |ref|: every |Δ| ≤ T·max|ref| (with --atol/--rtol: added to them). Any of the three replaces the default: the floor of the output's lowest compute precision (1e-4 float32, 1e-2 float16, 1e-9 float64, exact for integers) raised to 8× the reference's own rounding noise where that is larger (README Guarantees)");
const atolOption = () => new Option("--atol <A>", "absolute tolerance: every |Δ| ≤ A + R·|ref| (numpy.isclose's rule with --rtol; default: the calibrated criterion, see --tolerance)");
const rtolOption = () => new Option("--rtol <R>", "elementwise relative tolerance: every |Δ| ≤ A + R·|ref| (see --atol)");
const jsonOption = () => new Option("--json", "print the report as JSON (see docs/schema) instead of text");

function readVersion(): string {
  return `reparam-onnx ${toolVersion()} (onnxruntime-node ${onnxruntimeVersion()}, Node ${process.version})`;
}

/**
 * The program. `run` is called with the command's name, its positional arguments and its flags;
 * its exit code is returned by `parse` below.
 */
export function buildProgram(run: (name: CommandName, args: string[], flags: Flags) => Promise<number>): { program: Command; result: () => number | undefined } {
  let code: number | undefined;
  const program = new Command("reparam-onnx")
    .description("Structural re-parameterization compiler for ONNX: folds multi-branch training graphs into plain deploy convolutions, proven in onnxruntime.")
    .version(readVersion(), "-V, --version", "print the versions of reparam-onnx, onnxruntime-node and Node")
    .helpOption("-h, --help", "show help (each command has its own: reparam-onnx optimize --help)")
    .addHelpText("after", `\n${EXIT_CODES}`)
    .showSuggestionAfterError(true)
    .exitOverride()
    .configureOutput({ outputError: () => {} });

  const command = (name: CommandName, description: string) => {
    const c = program.command(name).description(description).showSuggestionAfterError(true).exitOverride().configureOutput({ outputError: () => {} });
    c.helpOption("-h, --help", "show this help").addHelpText("after", `\n${EXIT_CODES}`);
    c.action(async (...received: unknown[]) => {
      // commander passes the declared arguments, then the options object, then the command.
      const cmd = received.at(-1) as Command;
      code = await run(name, cmd.args, flagsOf(cmd));
    });
    return c;
  };

  command("optimize", "fold every multi-branch region into single convolutions, prove the result in onnxruntime, then write it atomically")
    .usage("[options] IN.onnx OUT.onnx\n       reparam-onnx optimize [options] --out-dir DIR MODEL.onnx|FOLDER...")
    .argument("<FILES...>", "IN.onnx and OUT.onnx ('-' writes the model to stdout and the report to stderr); with --out-dir, the models and folders of models to optimize")
    .addOption(new Option("--out-dir <DIR>", "batch: optimize every model given (and every .onnx in each folder given) in one process, writing DIR/<same name>; created if missing"))
    .addOption(shapeOption())
    .addOption(new Option("--no-verify", "skip the proof in onnxruntime (the report says the output is NOT proven)"))
    .addOption(toleranceOption())
    .addOption(atolOption())
    .addOption(rtolOption())
    .addOption(runsOption())
    .addOption(new Option("--seed <S>", "seed of the random inputs (default: 1)"))
    .addOption(providerOption())
    .addOption(new Option("--external-data", "write the weights to OUT.onnx.data beside the model (needed above 2 GiB)"))
    .addOption(new Option("--no-costlier", "refuse every composition that raises MACs (the default; overrides --max-mac-growth)"))
    .addOption(new Option("--max-mac-growth <F>", "largest MAC growth factor a composition may have (default: 1, since a composition that raises MACs is slower; 2 gives the authors' composed stems)"))
    .addOption(new Option("--fix-shapes", "write the --shape values into the output's declared input shapes, so rewrites may rely on them (default: rules use only the shapes the model declares; a dynamic dim stays dynamic)"))
    .addOption(new Option("--duplicate-shared", "fold shared weights into private copies even when that grows the model"))
    .addOption(new Option("--skip-failing", "when verification fails, drop the rewrite(s) responsible and write the verified rest"))
    .addOption(new Option("--explain", "list every rewrite and every candidate left alone with the reason"))
    .addOption(jsonOption())
    .addOption(new Option("--approx-attention <MODE>", "APPROXIMATION, off by default: 'mean' replaces nearly constant channel attention by its mean (needs --calib)"))
    .addOption(new Option("--approx-threshold <T>", "largest per-channel standard deviation of an attention block replaced by --approx-attention (default: 0.01)"))
    .addOption(new Option("--calib <DATA>", "calibration inputs for --approx-attention: a .npy [K, C, H, W] or a folder of .npy files"))
    .addOption(new Option("--labels <FILE.npy>", "class of each calibration input: the report adds accuracy before → after the approximation"))
    // Makes wrong folds on purpose, for tests and demonstrations: not listed in --help.
    .addOption(new Option("--unsafe-ignore-border-rule").hideHelp());

  command("verify", "run two models on the same inputs in onnxruntime and compare every output (the CI equivalence check)")
    .argument("<A.onnx>", "the reference model (with --load-outputs: the model checked against the stored outputs)")
    .argument("[B.onnx]", "the candidate model (leave it out with --load-outputs, or with --save-outputs to only record A's outputs)")
    .addOption(new Option("--input <NAME=FILE.npy|FILE.npz>", "feed arrays instead of random inputs: NAME=FILE.npy, NAME=FILE.npz (one array), or FILE.npz holding an array per input name; repeat for several").argParser(collect))
    .addOption(new Option("--save-outputs <FILE.npz>", "write every input set's inputs and A's outputs to FILE.npz (arrays inputs/K/NAME, outputs/K/NAME), for --load-outputs later"))
    .addOption(new Option("--load-outputs <FILE.npz>", "compare one model with outputs stored in FILE.npz (as --save-outputs writes, or outputs/NAME + inputs/NAME, or bare output names with --input) instead of running a reference"))
    .addOption(shapeOption())
    .addOption(runsOption())
    .addOption(new Option("--seed <S>", "seed of the random inputs (default: 1)"))
    .addOption(toleranceOption())
    .addOption(atolOption())
    .addOption(rtolOption())
    .addOption(providerOption())
    .addOption(jsonOption());

  command("inspect", "print opsets, inputs, outputs, ops, weights, MACs and what optimize would do")
    .argument("<MODEL.onnx>", "the model to inspect")
    .addOption(shapeOption())
    .addOption(new Option("--explain", "say why each candidate is left alone"))
    .addOption(new Option("--no-costlier", "as optimize --no-costlier"))
    .addOption(new Option("--duplicate-shared", "as optimize --duplicate-shared"))
    .addOption(new Option("--attention-stats", "measure each input-dependent channel-attention block on --calib data"))
    .addOption(new Option("--calib <DATA>", "calibration inputs for --attention-stats: a .npy [K, C, H, W] or a folder of .npy files"))
    .addOption(jsonOption());

  command("train", "train a multi-branch network with the TensorFlow.js trainer and export it to ONNX (needs @tensorflow/tfjs and @tensorflow/tfjs-backend-wasm installed beside reparam-onnx)")
    .addOption(new Option("--arch <NAME>", "network: repvgg-mini, acb-mini, dbb-mini, … (default: repvgg-mini)"))
    .addOption(new Option("--block-spec <FILE.json>", "network described in a JSON block spec instead of --arch"))
    .addOption(new Option("--data <NAME|DIR>", "fashion-mnist, mnist, synthetic[:N] or a folder of IDX files (default: fashion-mnist)"))
    .addOption(new Option("--epochs <N>", "epochs to train (default: 2)"))
    .addOption(new Option("--batch <N>", "batch size (default: 64)"))
    .addOption(new Option("--lr <X>", "peak learning rate of the cosine schedule (default: 0.1 for sgd, 0.003 for adam)"))
    .addOption(new Option("--optimizer <sgd|adam>", "optimizer (default: sgd, momentum 0.9)"))
    .addOption(new Option("--weight-decay <X>", "weight decay (default: 1e-4 for sgd, 0.01 for adam)"))
    .addOption(new Option("--online", "OREPA-style online linearization: one conv per layer in the forward pass"))
    .addOption(new Option("--dynamic", "DyRep: grow and prune BN branches during training"))
    .addOption(new Option("--dynamic-every <N>", "epochs between dynamic structure changes (default: 1)"))
    .addOption(new Option("--asr", "add ASR constant attention to every block"))
    .addOption(new Option("--out <FILE.onnx>", "where to write the trained multi-branch model (default: model.onnx)"))
    .addOption(new Option("--checkpoint <FILE>", "checkpoint file (default: OUT.onnx.ckpt)"))
    .addOption(new Option("--checkpoint-every <N>", "also write the checkpoint every N steps within an epoch (default: after each epoch only; with --dynamic, not during the steps that score branches)"))
    .addOption(new Option("--resume", "continue from the checkpoint, at the step it was written, with its hyper-parameters (a different --lr, --batch, --optimizer, --weight-decay, --seed, --dynamic-every is refused; --epochs may grow the run)"))
    .addOption(new Option("--backend <NAME>", "auto, tfjs-node-gpu, tfjs-node, wasm or cpu (default: auto)"))
    .addOption(new Option("--workers <N|auto>", "data-parallel workers (default: auto: 2 on wasm, else 1)"))
    .addOption(new Option("--limit <N>", "use only the first N training images"))
    .addOption(new Option("--seed <S>", "seed of initialization and shuffling (default: 1)"))
    .addOption(new Option("--no-progress", "no progress bar on stderr"))
    .addOption(jsonOption());

  command("eval", "accuracy of an ONNX classifier in onnxruntime on a data set")
    .argument("<MODEL.onnx>", "the classifier")
    .addOption(new Option("--data <NAME|DIR>", "fashion-mnist, mnist, synthetic[:N] or a folder of IDX files (default: fashion-mnist)"))
    .addOption(new Option("--split <test|train>", "which split (default: test)"))
    .addOption(new Option("--limit <N>", "use only the first N images"))
    .addOption(new Option("--batch <N>", "batch size when the model's batch is dynamic (default: 500)"))
    .addOption(providerOption())
    .addOption(jsonOption());

  return { program, result: () => code };
}

/** commander's option values, under the long names the commands read (`--no-verify` → "no-verify": true). */
function flagsOf(cmd: Command): Flags {
  const values = cmd.opts();
  const flags: Record<string, unknown> = {};
  for (const o of cmd.options) {
    const long = o.long?.replace(/^--/, "");
    if (!long) continue;
    const v = values[o.attributeName()];
    if (o.negate) flags[long] = v === false;
    else if (v !== undefined) flags[long] = v;
  }
  return flags as Flags;
}

/**
 * commander's parse errors as one line: which command, what was wrong, and what was probably meant.
 * A flag of another command (`verify --no-verify`) names the command that has it.
 */
export function usageMessage(program: Command, argv: string[], e: CommanderError): string {
  const text = e.message.replace(/^error: /, "");
  const name = argv.find((a) => !a.startsWith("-"));
  const cmd = program.commands.find((c) => c.name() === name);
  const where = cmd ? `${cmd.name()}: ` : "";
  const help = `reparam-onnx${cmd ? ` ${cmd.name()}` : ""} --help`;
  if (e.code === "commander.unknownOption") {
    const flag = /unknown option '([^']+)'/.exec(text)?.[1] ?? "";
    const bare = flag.replace(/=.*$/, "");
    const similar = /\(Did you mean (.+)\?\)/.exec(text)?.[1];
    if (cmd?.options.some((o) => o.long === bare)) {
      // The command has it: given before the command name, or a value given to a flag that takes none.
      const flagAt = argv.indexOf(flag);
      if (flagAt >= 0 && flagAt < argv.indexOf(cmd.name())) return `option '${flag}' comes before the command: write it after (reparam-onnx ${cmd.name()} … ${flag})`;
      if (flag !== bare) return `${where}option '${bare}' takes no value (write '${bare}', not '${flag}'); ${help} lists ${cmd.name()} options`;
    }
    const owners = program.commands.filter((c) => c !== cmd && c.options.some((o) => o.long === bare)).map((c) => c.name());
    if (owners.length) return `${where}unknown option '${flag}': it belongs to ${owners.join(", ")} (did you mean 'reparam-onnx ${owners[0]} … ${bare}'${similar ? ` or ${similar}` : ""}?); ${help} lists ${cmd?.name() ?? "the"} options`;
    return `${where}unknown option '${flag}'${similar ? ` (did you mean ${similar}?)` : ""}; ${help} lists the options`;
  }
  if (e.code === "commander.unknownCommand") {
    const similar = /\(Did you mean (.+)\?\)/.exec(text)?.[1];
    return `${text.split("\n")[0]!}${similar ? ` (did you mean ${similar}?)` : ""}; reparam-onnx --help lists the commands`;
  }
  return `${where}${text.split("\n").map((l) => l.trim()).filter(Boolean).join(" ")}; ${help} explains`;
}
