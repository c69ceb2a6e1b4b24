// The layering of src/ (README "Design"; issue 13): folders show the flow and no arrow goes up.
//   cli → app → {pipeline, rules, verify} → {algebra, eval, ir}; rules → pipeline (the contract).
// `npm test` runs this (npm run lint:deps); a violation names the file and the rule.
/** Folders a folder may import from (besides itself, node builtins and npm packages). */
const allowed = {
  ir: [],
  algebra: [],
  eval: ["algebra", "ir"],
  pipeline: ["algebra", "eval", "ir"],
  rules: ["pipeline", "algebra", "eval", "ir"],
  verify: ["algebra", "eval", "ir"],
  app: ["pipeline", "rules", "verify", "algebra", "eval", "ir"],
  // The trainer is its own program (TensorFlow.js, an optional peer dependency); the CLI starts it.
  trainer: ["ir"],
  cli: ["app", "verify", "ir", "trainer"],
};
const folders = Object.keys(allowed);

module.exports = {
  forbidden: [
    {
      name: "no-circular",
      severity: "error",
      comment: "A cycle between modules: the layering cannot show the flow.",
      from: { path: "^src/" },
      to: { circular: true },
    },
    ...folders.map((folder) => ({
      name: `${folder}-layer`,
      severity: "error",
      comment: `src/${folder} may import only from ${allowed[folder].length ? allowed[folder].map((f) => `src/${f}`).join(", ") : "itself"} (README "Design").`,
      // Tests beside a rule may reach anything (helpers, verification); the layering is about the code.
      from: { path: `^src/${folder}/`, pathNot: "\\.test\\.ts$" },
      to: { path: "^src/", pathNot: [`^src/${folder}/`, ...allowed[folder].map((f) => `^src/${f}/`)] },
    })),
    {
      name: "examples-public-api",
      severity: "error",
      comment: "Examples show the public API: they import src/index.ts only.",
      from: { path: "^examples/" },
      to: { path: "^src/", pathNot: "^src/index\\.ts$" },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    moduleSystems: ["es6"],
  },
};
