// Prints the failed tests of one or more vitest JSON reports, last, so that a
// CI log cut to its tail still names what failed and why.
// Usage: node scripts/test-summary.mjs LABEL=report.json [LABEL=report.json ...]
import { existsSync, readFileSync } from "node:fs";
import { relative } from "node:path";

const MESSAGE_LINES = 12;
let anyFailed = false;

for (const argument of process.argv.slice(2)) {
  const [label, file] = argument.split("=", 2);
  if (!existsSync(file)) {
    console.log(`${label}: no report (the run ended before vitest wrote one)`);
    anyFailed = true;
    continue;
  }
  const report = JSON.parse(readFileSync(file, "utf8"));
  console.log(
    `${label}: ${report.numPassedTests} passed, ${report.numFailedTests} failed, ` +
      `${report.numFailedTestSuites} of ${report.numTotalTestSuites} suites failed`,
  );
  for (const suite of report.testResults) {
    const path = relative(process.cwd(), suite.name);
    const failed = suite.assertionResults.filter((test) => test.status === "failed");
    if (suite.status === "failed" && failed.length === 0) {
      // A file that failed outside any test: an import error or a failing hook.
      anyFailed = true;
      console.log(`  FAIL ${path}\n${indent(suite.message)}`);
    }
    for (const test of failed) {
      anyFailed = true;
      console.log(`  FAIL ${path} > ${test.fullName}`);
      for (const message of test.failureMessages) console.log(indent(message));
    }
  }
}
process.exitCode = anyFailed ? 1 : 0;

function indent(text) {
  return (
    String(text ?? "")
      .split("\n")
      // The runner's own frames say nothing about the failure.
      .filter((line) => !/node_modules\/|new Promise \(<anonymous>\)/.test(line))
      .slice(0, MESSAGE_LINES)
      .map((line) => `      ${line}`)
      .join("\n")
  );
}
