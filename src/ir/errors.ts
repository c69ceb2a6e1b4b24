// Errors with a meaning for the user. A ModelError is a problem with an input model; the CLI prints
// it as one line naming the file. Anything else escaping to the CLI is a bug in this tool.
export class ModelError extends Error {
  override name = "ModelError";
}

/** Bad usage or environment (flags, paths, missing provider): one line, exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}
