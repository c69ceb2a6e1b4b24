// Errors with a meaning for the user. A ModelError is a problem with an input model; the CLI prints
// it as one line naming the file. Anything else escaping to the CLI is a bug in this tool.
export class ModelError extends Error {
  override name = "ModelError";
}

/** Bad usage or environment (flags, paths, missing provider): one line, exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/**
 * Run `f` on a model loaded from `file`: a ModelError raised there (e.g. a tensor decoded lazily
 * by a pass) is about `file`, so the one-line message names it. The CLI and the web app use it.
 */
export function about<T>(file: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof ModelError && !e.message.startsWith(`${file}:`)) throw new ModelError(`${file}: ${e.message}`);
    throw e;
  }
}
