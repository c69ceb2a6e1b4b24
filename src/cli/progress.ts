// A one-line progress display on stderr for long runs (load, passes with candidates done / total,
// verify, write): shown only when stderr is a terminal (or REPARAM_ONNX_PROGRESS=1), silent
// otherwise so logs and pipes stay clean.
export class Progress {
  /** The display in use, so an error path can clear it before printing its one line. */
  static current: Progress | undefined;
  private readonly enabled: boolean;
  private readonly start = performance.now();
  private timer: NodeJS.Timeout | undefined;
  private label = "";
  private frame = 0;
  private lastDraw = 0;

  /** `prefix` starts every label (batch runs: "[2/5] "). */
  constructor(quiet = false, private readonly prefix = "") {
    this.enabled = !quiet && (process.stderr.isTTY === true || process.env.REPARAM_ONNX_PROGRESS === "1");
  }

  stage(label: string): void {
    if (!this.enabled) return;
    Progress.current = this;
    this.label = label;
    this.draw();
    this.timer ??= setInterval(() => this.draw(), 200);
    this.timer.unref();
  }

  /**
   * A new label from synchronous work (the passes), where the timer cannot fire: drawn at once
   * when `first` (a new phase) or when 100 ms have passed since the last drawing.
   */
  update(label: string, first = false): void {
    if (!this.enabled) return;
    this.label = label;
    if (first || performance.now() - this.lastDraw >= 100) this.draw();
  }

  private draw(): void {
    this.lastDraw = performance.now();
    const spinner = "|/-\\"[this.frame++ % 4];
    const elapsed = ((performance.now() - this.start) / 1000).toFixed(1);
    process.stderr.write(`\r\x1b[K${spinner} ${this.prefix}${this.label} (${elapsed} s)`);
  }

  done(): void {
    if (!this.enabled) return;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    process.stderr.write("\r\x1b[K");
    Progress.current = undefined;
  }
}
